"""One place that turns every failure into a friendly page (or JSON for scripts)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import urlsplit

from flask import Flask, Response, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from release.core.links import LinkError
from release.web.headers import redact_path

log = logging.getLogger(__name__)

TITLES = {
    400: _l("This link or form is not valid"),
    403: _l("Not allowed"),
    404: _l("Not found"),
    405: _l("Not allowed"),
    410: _l("No longer available"),
    413: _l("Too much data"),
    429: _l("Too many requests"),
    500: _l("Something went wrong on our side"),
    503: _l("Temporarily unavailable"),
}


# The one JSON error shape of the service's APIs (/api/, /gateway/): a stable code per status
# for programs, and a sentence for people.
API_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "refused",
    410: "gone",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}
API_PREFIXES = ("/api/", "/gateway/")


def api_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """An API error: ``{"error": <code for the status>, "message": <plain words>}``."""
    response = jsonify(error=API_CODES.get(status, "error"), message=message)
    response.status_code = status
    response.headers.update(headers or {})
    return response


# Flask-WTF's reasons (CSRFError.description) and what the visitor can do about each. The
# reason goes to the log; the token never does.
TOKENS_DIFFER = "The CSRF tokens do not match."
REFERRER_MISMATCH = "The referrer does not match the host."
_STALE = _l("The form expired or came from elsewhere. Please reload the page and try again.")
CSRF_ADVICE = {
    "The CSRF token is missing.": _l(
        "The form arrived without its security token. Please reload the page and try again."
    ),
    "The CSRF session token is missing.": _l(
        "Your browser did not send back this site's cookie, which the form needs. "
        "Please allow cookies for this site, reload the page and try again."
    ),
    "The CSRF token has expired.": _l("The form expired. Please reload the page and try again."),
    "The CSRF token is invalid.": _STALE,
    TOKENS_DIFFER: _STALE,
    "The referrer header is missing.": _l(
        "Your browser did not say which page sent the form. Please allow this site to see the "
        "referring page (the Referer header), reload the page and try again."
    ),
    REFERRER_MISMATCH: _l(
        "The form was sent from a page at another address. Please open this site at its usual "
        "address, reload the page and try again."
    ),
}


def _referrer_hosts() -> str:
    """Both hosts of a referrer mismatch (a proxy that rewrites Host shows here); never the
    referrer's path or query, which may carry tokens."""
    seen = urlsplit(request.referrer or "").netloc.rpartition("@")[2]  # no user:password@
    return f" (referrer host {seen!r}, request host {request.host!r})"


def _wants_json() -> bool:
    return (
        request.path.endswith("/status")
        or request.path.startswith(("/api/", "/gateway/"))
        or (request.accept_mimetypes.best == "application/json")
    )


def render_error(status: int, message: str) -> ResponseReturnValue:
    """An error page (or JSON) with a plain-words message and no internals."""
    if request.path.startswith(API_PREFIXES):
        return api_error(status, message)
    title = str(TITLES.get(status, _l("Error")))
    if _wants_json():
        return jsonify(error=title, message=message), status
    return render_template("error.html", status=status, title=title, message=message), status


def register(app: Flask) -> None:
    """Install the handlers."""

    @app.errorhandler(LinkError)
    def link_error(exc: LinkError) -> ResponseReturnValue:
        # The messages are marked where they are raised (links.py: LinkInvalid/LinkExpired).
        return render_error(exc.status, gettext(str(exc)))

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError) -> ResponseReturnValue:
        reason = str(exc.description)
        log.warning("CSRF check failed on %s %s: %s%s", request.method, redact_path(request.path), reason,
                    _referrer_hosts() if reason == REFERRER_MISMATCH else "")  # fmt: skip
        return render_error(400, str(CSRF_ADVICE.get(reason, CSRF_ADVICE[TOKENS_DIFFER])))

    @app.errorhandler(OperationalError)
    def database_down(exc: OperationalError) -> ResponseReturnValue:
        log.error("database unavailable: %s", exc.orig.__class__.__name__ if exc.orig else exc)
        return render_error(503, gettext("The service is briefly unavailable. Please try again in a minute."))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> ResponseReturnValue:
        status = exc.code or 500
        default = exc.description if status != 500 else ""
        message = default if default and not default.startswith(("The requested URL", "The server")) else ""
        return render_error(status, message or str(TITLES.get(status, _l("Error"))) + ".")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> ResponseReturnValue:
        if isinstance(exc, HTTPException):
            return http_error(exc)
        log.exception("unhandled error on %s %s", request.method, redact_path(request.path))
        return render_error(500, gettext("Please try again later; the error has been logged."))
