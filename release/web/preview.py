"""The preview of a held message, for the release link's holder and for admins.

The release page shows the headers, verdicts, text, links and attachments itself (escaped
text); the sanitised HTML goes into a sandboxed frame whose address is a short-lived signed
token for that one copy (its own salt: it cannot stand in for a release token, a session or
CSRF), so the release token never appears in a frame's URL or Referer. The frame's own
policy forbids everything but inline style; its sandbox forbids script, forms, navigation of
the page and popups. Attachments download only where an admin allowed it, and never an
executable or an archive.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, abort, url_for
from flask_babel import gettext
from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy.exc import InvalidRequestError

from release.container import services
from release.core.previews import Shown, Unavailable
from release.db.models import Recipient
from release.ops.metrics import PREVIEWS
from release.preview.html import frame_document
from release.web.database import db_session
from release.web.headers import allow_preview_frame

bp = Blueprint("preview", __name__)
SALT = "sender-fp-release.preview-frame"
FRAME_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'self'; sandbox"
)
ATTACHMENT_POLICY = "default-src 'none'; sandbox"
UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._ -]+")


def _signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(services().settings.app.secret_key, salt=SALT)


def frame_token(recipient: Recipient) -> str:
    """A token naming this copy (and the release token it was reached by, through its hash),
    valid for ``preview.frame_minutes``."""
    return str(_signer().dumps([recipient.id, recipient.token_hash[:16]]))


def _recipient(token: str) -> Recipient:
    """The copy a frame token names; 404 when it is tampered with, expired or stale."""
    max_age = services().settings.preview.frame_minutes * 60
    try:
        recipient_id, token_hash = _signer().loads(token, max_age=max_age)
        recipient = db_session().get(Recipient, int(recipient_id))
    except (BadData, ValueError, TypeError):
        recipient = None
    else:
        if recipient is not None and recipient.token_hash[:16] != token_hash:
            recipient = None
    if recipient is None:
        abort(404, description=gettext("This preview has expired. Please reload the page it came from."))
    return recipient


def context(recipient: Recipient) -> dict[str, Any]:
    """What templates/_preview.html needs for ``recipient``'s copy (ends the transaction)."""
    node = recipient.report.node
    token = frame_token(recipient)
    shown: Shown = services().previews.show(db_session(), recipient)
    try:  # the copy's rows may have gone (purged, deleted) while the gateway was asked
        db_session().refresh(recipient)
    except InvalidRequestError:
        abort(
            404, description=gettext("This release link is not valid. Please use the link from the notification mail.")
        )
    preview = shown.preview
    PREVIEWS.labels(node, str(shown.unavailable or (preview and preview.problem) or "shown")).inc()
    if preview is not None and preview.html is not None:
        allow_preview_frame()
    downloads = services().settings.preview.allow_downloads
    return {
        "shown": shown,
        "preview": preview,
        "Unavailable": Unavailable,
        "frame_url": url_for("preview.frame", token=token),
        "download_url": (
            (lambda index: url_for("preview.attachment", token=token, index=index)) if downloads else None
        ),
    }


@bp.get("/preview/<token>")
def frame(token: str) -> Response:
    """The sanitised HTML body, for the release page's sandboxed frame only."""
    recipient = _recipient(token)
    shown = services().previews.show(db_session(), recipient)
    preview = shown.preview
    if preview is None or preview.html is None:
        abort(404, description=gettext("This message has no formatted part to show."))
    document = frame_document(preview.html, preview.headers.subject)
    response = Response(document, mimetype="text/html")
    response.headers["Content-Security-Policy"] = FRAME_POLICY
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/preview/<token>/attachments/<int:index>")
def attachment(token: str, index: int) -> Response:
    """One attachment, as a download, where downloads are allowed and it is harmless."""
    recipient = _recipient(token)
    if not services().settings.preview.allow_downloads:
        abort(404)
    found = services().previews.attachment(db_session(), recipient, index)
    if found is None:
        abort(404)
    listed, data = found
    if listed.risky:
        abort(403, description=gettext("Executables and archives cannot be downloaded here."))
    name = UNSAFE_FILENAME.sub("_", listed.name).strip(" .") or "attachment"
    response = Response(data, mimetype="application/octet-stream")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Content-Security-Policy"] = ATTACHMENT_POLICY
    response.headers["Cache-Control"] = "no-store"
    return response
