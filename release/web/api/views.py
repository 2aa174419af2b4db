"""JSON API under /api/v1: a release's public status by its token, and admin endpoints for
scripts, authenticated with API keys (bearer). Admin actions go through admin_actions, as in
the console, and are audited under the key's id.

The blueprint is exempt from CSRF because its state-changing endpoints accept only a bearer
key, never the session cookie: a cross-site form cannot send the Authorization header.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, Flask, Response, g, jsonify, request

from release.container import services
from release.core import admin_actions, retention
from release.core.admin_actions import ActionRefused, ReportFilter
from release.core.release import find_recipient_by_token
from release.db.models import Recipient, Report, utcnow
from release.db.states import ReportState
from release.web import bearer
from release.web.api.spec import openapi_document
from release.web.database import db_session
from release.web.errors import api_error
from release.web.presenters import release_status

bp = Blueprint("api", __name__, url_prefix="/api/v1")
F = TypeVar("F", bound=Callable[..., Any])
KEY_PREFIX = "sha256:"


def _stored_digests() -> list[str]:
    return [
        key[len(KEY_PREFIX) :] if key.startswith(KEY_PREFIX) else bearer.key_digest(key)
        for key in services().settings.api.keys
    ]


def key_required(view: F) -> F:
    """Admin endpoints: a valid ``Authorization: Bearer <key>``; a session cookie never counts."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        digest = bearer.matching_digest(_stored_digests())
        if digest is None:
            return api_error(401, "A valid API key is required (Authorization: Bearer <key>).",
                             bearer.challenge("api"))  # fmt: skip
        g.api_actor = f"api-key:{digest[:12]}"  # the key's id: a digest prefix
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _recipient_json(recipient: Recipient) -> dict[str, Any]:
    return {"id": recipient.id, "address": recipient.address, "state": recipient.state,
            "expires_at": _iso(recipient.expires_at), "released_at": _iso(recipient.released_at)}  # fmt: skip


def _report_json(report: Report) -> dict[str, Any]:
    return {
        "id": report.id,
        "node": report.node,
        "message_id": report.message_id,
        "state": report.state,
        "sender": report.envelope_sender,
        "subject": report.subject,
        "created_at": _iso(report.created_at),
        "recipients": [_recipient_json(r) for r in report.recipients],
    }


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3 description of this API."""
    return jsonify(openapi_document(services().settings.app.public_url))


@bp.get("/releases/<token>")
def release(token: str) -> Response:
    """Public: the state of the copy a release token stands for (the token is the credential)."""
    recipient = find_recipient_by_token(db_session(), token)
    if recipient is None:
        return _no_store(api_error(404, "No release matches this token."))
    status = release_status(recipient, expired_now=recipient.expires_at <= utcnow())
    return _no_store(jsonify(status))


@bp.get("/reports")
@key_required
def reports() -> Response:
    """Reports, newest first, 50 a page, optionally of one state."""
    state = request.args.get("state", "")
    if state and state not in list(ReportState):
        return api_error(400, f"state must be one of {', '.join(ReportState)}.")
    raw_page = request.args.get("page", "1")
    # isascii: str.isdigit() is true for "²", which int() refuses.
    if not (raw_page.isascii() and raw_page.isdigit()) or not 1 <= int(raw_page) <= 1_000_000:
        return api_error(400, "page must be a whole number from 1.")
    flt = ReportFilter(values={"status": state} if state else {})
    page = admin_actions.search_reports(db_session(), flt, int(raw_page))
    body = {"page": page.number, "pages": page.pages, "total": page.total, "per_page": page.size,
            "reports": [_report_json(r) for r in page.items]}  # fmt: skip
    return _no_store(jsonify(body))


@bp.post("/recipients/<id:recipient_id>/release")
@key_required
def release_copy(recipient_id: int) -> Response:
    """Queue the release of one copy, as the console's Release action does (audited)."""
    session = db_session()
    if session.get(Recipient, recipient_id) is None:
        return api_error(404, "No copy has this id.")
    try:
        recipient = admin_actions.release_copy(session, recipient_id, g.api_actor)
    except ActionRefused as exc:
        session.rollback()
        return api_error(409, str(exc))
    response = jsonify(id=recipient.id, state=recipient.state)
    response.status_code = 202
    return response


def _whole(value: object) -> bool:
    """A JSON whole number (JSON Schema counts 400.0 as an integer; true is not one)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _retention_json(current: retention.Retention) -> Response:
    return _no_store(jsonify(short_hours=current.short_hours, long_days=current.long_days,
                             record_days=current.record_days))  # fmt: skip


@bp.get("/retention")
@key_required
def retention_settings() -> Response:
    """The retention in force (admin values where set, else the config defaults)."""
    return _retention_json(retention.current(db_session(), services().settings.retention))


@bp.put("/retention")
@key_required
def change_retention() -> Response:
    """Set all three retention times, validated and audited as in the console; they apply at once."""
    body = request.get_json(silent=True)
    names = tuple(retention.KEYS)
    if not isinstance(body, dict) or set(body) != set(names) or not all(map(_whole, body.values())):
        return api_error(400, f"A JSON object with exactly the whole numbers {', '.join(names)}.")
    session = db_session()
    defaults = services().settings.retention
    try:
        admin_actions.change_retention(session, {name: int(body[name]) for name in names}, g.api_actor, defaults)
    except retention.RetentionInvalid as exc:
        session.rollback()
        return api_error(422, str(exc))
    return _retention_json(retention.current(session, defaults))


def register(app: Flask) -> None:
    """Mount the API and exempt it from CSRF (bearer keys, not cookies; see the module doc)."""
    app.register_blueprint(bp)
    app.extensions["csrf"].exempt(bp)
