"""Where rspamd nodes push the messages they reject (Rspamd's metadata_exporter, HTTP backend,
docs/rspamd/): ``POST /gateway/v1/rspamd/<node>`` with the raw message as the body and the
envelope in ``X-Rspamd-*`` headers (``meta_headers = true``).

Authenticated with HTTP Basic (user: the node's name, password: its ``push_password``),
compared in constant time; a refusal is logged. Bounded by the node's
``max_message_bytes`` (413) before the body is read. Idempotent: the exporter treats any
answer but 200 as a failure and defers the message (the sending MTA tries again), so a
repeat is answered 200 as well. No CSRF (no cookies, machine to machine) and no rate limit
(one push per rejected message: a per-IP limit would only throttle a busy gateway).
"""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, Response, abort, jsonify, request
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import RequestEntityTooLarge

from release.config import NodeSettings
from release.container import services
from release.db.models import utcnow
from release.gateway import stored
from release.ops.metrics import PUSHES
from release.web.database import db_session
from release.web.errors import api_error
from release.web.input_guard import FORM_TYPES

log = logging.getLogger(__name__)
bp = Blueprint("rspamd_push", __name__, url_prefix="/gateway/v1/rspamd")


@bp.url_value_preprocessor
def _size_cap(_endpoint: str | None, values: dict[str, str] | None) -> None:
    """Bound the body by the node's cap; runs before the app's input guard, which refuses
    a declared length above it (and reading an undeclared one stops there)."""
    node = _rspamd_node((values or {}).get("node", ""))
    if node is None:
        return
    # One byte more than the cap: an undeclared (chunked) body is cut there, silently, by
    # werkzeug; reading that byte is how the view knows it was longer (not a truncated copy).
    request.max_content_length = node.max_message_bytes + 1
    if (request.content_length or 0) > node.max_message_bytes:
        _too_large(node)


@bp.post("/<node>")
def push(node: str) -> tuple[Response, int]:
    """200 ``{"status": "stored" | "already stored", "message": m, "copies": new copies}``."""
    settings = _rspamd_node(node)
    if settings is None:
        return api_error(404, "No rspamd node of that name is configured."), 404
    if not _authorized(settings):
        PUSHES.labels(node, "unauthorized").inc()
        log.warning("push to node %s refused: wrong or missing credentials (from %s)", node, request.remote_addr)
        challenge = {"WWW-Authenticate": f'Basic realm="sender-fp-release node {node}"'}
        return api_error(401, "The node's push credentials are required (HTTP Basic).", challenge), 401
    if request.mimetype in FORM_TYPES or request.is_json:
        PUSHES.labels(node, "invalid").inc()
        return api_error(415, 'Send the message itself (mime_type = "message/rfc822").'), 415
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        body = b""
        _too_large(settings)
    if len(body) > settings.max_message_bytes:  # no declared length, and more arrived than the cap
        _too_large(settings)
    try:
        pushed = stored.parse_push(body, request.headers.get)
    except stored.PushInvalid as exc:
        PUSHES.labels(node, "invalid").inc()
        log.warning("push to node %s refused: %s", node, exc)
        return api_error(400, str(exc)), 400
    try:
        result = stored.store(db_session(), node, pushed, utcnow())
    except stored.StoreConflict as exc:  # the rule defers; the sender's server tries again
        log.warning("push to node %s not stored: %s", node, exc)
        return api_error(503, "The message changed under another request; push it again."), 503
    PUSHES.labels(node, "repeat" if result.repeat else "stored").inc()
    log.info("node %s pushed message %s (queue id %s, %d bytes): %d new copies%s", node, result.message_id,
             pushed.queue_id, len(body), result.added, " (a repeat)" if result.repeat else "")  # fmt: skip
    status = "already stored" if result.repeat and not result.added else "stored"
    response = jsonify(status=status, message=result.message_id, copies=result.added)
    response.headers["Cache-Control"] = "no-store"
    return response, 200


def _rspamd_node(name: str) -> NodeSettings | None:
    node = services().settings.node(name)
    return node if node is not None and node.type == "rspamd" else None


def _authorized(node: NodeSettings) -> bool:
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return False
    # Both compared, always: timing tells neither which part was wrong.
    user_ok = hmac.compare_digest((auth.username or "").encode(), node.name.encode())
    password_ok = hmac.compare_digest((auth.password or "").encode(), node.push_password.encode())
    return user_ok and password_ok and bool(node.push_password)


def _too_large(node: NodeSettings) -> None:
    PUSHES.labels(node.name, "too_large").inc()
    log.warning("push to node %s refused: larger than max_message_bytes (%d)", node.name, node.max_message_bytes)
    abort(api_error(413, f"The message is larger than this node's limit of {node.max_message_bytes} bytes."))


@bp.record_once
def _no_csrf(state: BlueprintSetupState) -> None:
    """The push carries no cookie and no form: Basic auth is its authentication."""
    state.app.extensions["csrf"].exempt(push)
