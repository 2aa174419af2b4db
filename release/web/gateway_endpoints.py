"""The JSON API the gateway's HSL queries before rejecting: is this sender always allowed?

Read-only (GET), authenticated with a bearer key from ``policy.allowlist_keys`` compared in
constant time; off (404) while no key is configured.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify, request

from release.container import services
from release.core.choices import is_allowed
from release.web import bearer
from release.web.database import db_session
from release.web.errors import api_error

bp = Blueprint("gateway_api", __name__, url_prefix="/gateway/v1")
ADDRESS_LIMIT = 320


def _json(body: dict[str, object], status: int = 200) -> tuple[Response, int]:
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response, status


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
