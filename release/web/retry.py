"""The service's Flask class: a GET or HEAD that lost its database connection is answered
from a fresh one instead of the 503 page.

Pooled connections are checked locally at checkout, not pinged (liveness.py), so a backend
killed a moment before its next query is noticed only when that query fails. GET and HEAD
change nothing (views are read-only for them, a tested rule), so running the view once more
on a new connection is safe; other methods get the 503 page, and so does a second failure.
"""

from __future__ import annotations

import logging

from flask import Flask, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import DBAPIError

from release.web.database import SAFE_METHODS, discard_session
from release.web.headers import redact_path
from release.web.jsonbody import JsonProvider

log = logging.getLogger(__name__)


class ReleaseFlask(Flask):
    """Flask, with the read-only retry described above (and JSON bodies parsed as jsonbody.py says)."""

    json_provider_class = JsonProvider

    def dispatch_request(self) -> ResponseReturnValue:
        """Run the view; once more for a GET/HEAD whose database connection was lost."""
        try:
            return super().dispatch_request()
        except DBAPIError as exc:
            if not exc.connection_invalidated or request.method not in SAFE_METHODS:
                raise
            path = redact_path(request.path)
            log.warning("database connection lost during %s %s; retrying once", request.method, path)
            discard_session()
            return super().dispatch_request()
