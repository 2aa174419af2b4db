"""The JSON API the gateway calls: is this sender always allowed? (its HSL asks before
rejecting), and "a message was held" (halon6 nodes in sender_notice = "ndr" mode).

``GET /allowed`` is read-only, authenticated with a bearer key from ``policy.allowlist_keys``
compared in constant time, and off (404) while no key is configured.

``POST /held`` takes the fields of a report link, ``{"n", "m", "t", "s"}``; the signature is
its authentication, checked exactly as the report page checks a link (every key, clock
skew, fresh within the short retention). No CSRF (no cookies, machine to machine) and no
rate limit: a forged body costs one HMAC per link key and stores nothing, and a real node
pushes once per held message, which a per-IP limit would only throttle on a busy gateway.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, abort, jsonify, request
from flask.blueprints import BlueprintSetupState

from release.container import services
from release.core import held as held_messages
from release.core import links
from release.core.choices import is_allowed
from release.web import bearer
from release.web.database import db_session
from release.web.errors import api_error
from release.web.gateway_spec import gateway_openapi_document

bp = Blueprint("gateway_api", __name__, url_prefix="/gateway/v1")
ADDRESS_LIMIT = 320
MAX_TIME = 10**12  # as links.TIME_RE: at most 12 digits


def _json(body: dict[str, object], status: int = 200) -> tuple[Response, int]:
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response, status


@bp.get("/openapi.json")
def openapi() -> Response:
    """The gateway API's OpenAPI document (public: it holds no secret)."""
    return jsonify(gateway_openapi_document(services().settings.app.public_url))


@bp.get("/allowed")
def allowed() -> tuple[Response, int]:
    """``{"allowed": true}`` when the recipient chose "always allow this sender"."""
    keys = services().settings.policy.allowlist_keys
    if not keys:
        abort(404)
    if not bearer.matches_any(keys):
        return api_error(401, "A valid bearer key is required.", bearer.challenge("gateway")), 401
    recipient = request.args.get("recipient", "").strip()
    sender = request.args.get("sender", "").strip()
    if not recipient or not sender or len(recipient) > ADDRESS_LIMIT or len(sender) > ADDRESS_LIMIT:
        return api_error(400, "The recipient and sender addresses are required."), 400
    return _json({"allowed": is_allowed(db_session(), recipient, sender)})


@bp.post("/held")
def held() -> tuple[Response, int]:
    """202 ``{"status": "queued"}`` for a new held message, 200 ``already queued`` for a repeat."""
    # A body that is not JSON: 415 (wrong type) or 400 (unparsable), answered by the framework.
    fields = _link_fields(request.get_json())
    if fields is None:
        return api_error(400, 'The body must be a JSON object with exactly "n", "m", "t" and "s".'), 400
    svc = services()
    link = links.verify(  # LinkInvalid (400) or LinkExpired (410), answered by web/errors.py
        fields,
        keys=svc.settings.links.keys,
        nodes=svc.gateways.keys(),
        max_age_seconds=lambda: int(svc.ctx.retention(db_session).short.total_seconds()),
        now=time.time(),
        clock_skew_seconds=svc.settings.links.clock_skew_seconds,
    )
    node = svc.settings.node(link.node)
    try:
        queued = held_messages.accept_push(db_session(), link, fields["s"], node.sender_notice if node else "")
    except held_messages.PushRefused:
        return api_error(403, 'This node is not set to have the service notify senders (sender_notice = "ndr").'), 403
    return _json({"status": "queued"}, 202) if queued else _json({"status": "already queued"})


def _link_fields(body: Any) -> dict[str, str] | None:
    """The link's fields as strings (``t`` may be a JSON integer), or None for any other shape."""
    if not isinstance(body, dict) or set(body) != set(links.FIELDS):
        return None
    issued = body["t"]
    if isinstance(issued, int) and not isinstance(issued, bool) and 0 <= issued < MAX_TIME:
        body = {**body, "t": str(issued)}
    if not all(isinstance(body[k], str) for k in links.FIELDS):
        return None
    return {k: body[k] for k in links.FIELDS}


@bp.record_once
def _no_csrf(state: BlueprintSetupState) -> None:
    """The push carries no cookie and no form: its signature is its authentication."""
    state.app.extensions["csrf"].exempt(held)
