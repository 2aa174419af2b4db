"""Security headers on every response, and release tokens and query strings kept out of
access logs.

The Content-Security-Policy forbids inline script everywhere; only the report page (which
shows the CAPTCHA) allows the provider's origins.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from flask import Flask, Response, g, request

from release.captcha import Captcha
from release.config import Settings
from release.web.branding import logo_origin

if TYPE_CHECKING:
    from release.container import Services

BASE_CSP = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "frame-src": "'none'",
    "worker-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def allow_captcha() -> None:
    """Called by views that render the CAPTCHA widget."""
    g.csp_captcha = True


def allow_preview_frame() -> None:
    """Called by views that embed the sanitised preview frame (this origin only)."""
    g.csp_frame = True


def content_security_policy(settings: Settings, captcha: Captcha | None = None, *, frame: bool = False) -> str:
    """The policy for pages without (``captcha`` None) or with the CAPTCHA widget, and for
    pages that embed the preview frame."""
    policy = dict(BASE_CSP)
    if frame:
        policy["frame-src"] = "'self'"
    logo = logo_origin(settings)
    if logo:
        policy["img-src"] += " " + logo
    if captcha is not None:
        origins = " ".join(captcha.csp_sources)
        for directive in ("script-src", "frame-src", "connect-src", "style-src"):
            base = policy[directive] if policy[directive] != "'none'" else ""
            policy[directive] = f"{base} {origins}".strip() or "'none'"
        # ALTCHA solves its puzzle in a Web Worker created from a blob: URL.
        policy["worker-src"] = "'self' blob:"
        # Widgets (ALTCHA, reCAPTCHA) set inline style attributes on their own elements.
        policy["style-src"] += " 'unsafe-inline'"
    return "; ".join(f"{k} {v}" for k, v in policy.items())


def _header_hook(settings: Settings, captcha: Captcha) -> Callable[[Response], Response]:
    """The after-request hook, with every header value worked out once, at start-up."""
    common = [
        ("X-Content-Type-Options", "nosniff"),
        # Links carry tokens: never tell another site where a visitor came from. Same-origin
        # referrers stay, because CSRF protection checks them on HTTPS.
        ("Referrer-Policy", "same-origin"),
        ("X-Frame-Options", "DENY"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
    ]
    plain = [("Content-Security-Policy", content_security_policy(settings)), *common]
    with_captcha = [("Content-Security-Policy", content_security_policy(settings, captcha)), *common]
    with_frame = [("Content-Security-Policy", content_security_policy(settings, frame=True)), *common]
    always_https = settings.app.public_url.startswith("https://")
    hsts = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")

    def add_headers(response: Response) -> Response:
        headers = response.headers
        # Names already set by the view; one pass (a miss on ``name in headers`` costs werkzeug
        # an exception object).
        present = {name.lower() for name, _ in headers.items()}
        wanted = list(with_captcha if g.get("csp_captcha") else with_frame if g.get("csp_frame") else plain)
        if always_https or request.is_secure:
            wanted.append(hsts)
        if request.path.startswith(("/release/", "/report", "/preview/")):
            wanted.append(("Cache-Control", "no-store"))
        for name, value in wanted:
            if name.lower() not in present:
                headers.add(name, value)
        return response

    return add_headers


# A release token is a working credential, and a report link's query string carries its
# signature: access logs (werkzeug's server in demo mode, gunicorn's accesslog, which
# `python app.py` turns on) would otherwise keep both in the request line and in the Referer.
# Whatever follows /release/ is redacted, not only well-formed tokens: a mistyped or
# truncated link still carries most of a working token.
_TOKEN_IN_PATH = re.compile(r"/(release|api/v1/releases|preview)/[^/?#\s\"']+")
# A query string: from a "?" after a path (or URL) up to the next space or double quote.
_QUERY_AFTER_PATH = re.compile(r"(/[^\s?\"]*)\?[^\s\"]*")
# A percent-escaped ASCII letter or digit (what a path may spell "release" with).
_ESCAPED_LETTER = re.compile(r"%(3[0-9]|[46][1-9A-Fa-f]|[57][0-9Aa])")
# gunicorn.error names the request (with its query) when a request fails outside the app.
ACCESS_LOGGERS = ("werkzeug", "gunicorn.access", "gunicorn.error")


def redact_path(path: str) -> str:
    """``path`` with release tokens replaced by a placeholder (for request logs)."""
    return _TOKEN_IN_PATH.sub(r"/\1/[token]", path) if "/release" in path or "/preview" in path else path


def redact_request_line(message: str) -> str:
    """``message`` with release tokens replaced and query strings left out. Percent-escaped
    letters are read first: gunicorn logs the raw URI, and ``/%72elease/<token>`` is routed
    to /release/ all the same."""
    if "%" in message:
        message = _ESCAPED_LETTER.sub(lambda m: chr(int(m.group(1), 16)), message)
    if "?" in message:
        message = _QUERY_AFTER_PATH.sub(r"\1", message)
    return redact_path(message)


class RedactTokens(logging.Filter):
    """Replace release tokens in a log record's message with a placeholder and drop query
    strings."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is logging's problem, not ours
            return True
        if "/release" in message or "/preview" in message or "?" in message or "%" in message:
            redacted = redact_request_line(message)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


def redact_access_logs() -> None:
    """Attach the token filter to the access loggers (once per process)."""
    for name in ACCESS_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


def register(app: Flask) -> None:
    """Install the header hook and the access-log redaction."""
    svc: Services = app.extensions["release"]
    app.after_request(_header_hook(svc.settings, svc.captcha))
    redact_access_logs()
