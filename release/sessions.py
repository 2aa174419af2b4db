"""Flask's signed-cookie session, with its signer built once instead of on every request.

The session holds the CSRF token of the report form, so the report page, the service's
hottest page, saves one on every first visit. Flask builds a new serializer for every
request, even one that sends no cookie, and itsdangerous test-serialises ``{}`` each time to
learn the serializer's type: about a tenth of a millisecond per page view, spent twice (open
and save) for nothing. The cookie's format, keys and signature are Flask's own.
"""

from __future__ import annotations

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer


class CachedSignerSessionInterface(SecureCookieSessionInterface):
    """SecureCookieSessionInterface; the serializer is rebuilt only when the keys change."""

    def __init__(self) -> None:
        self._built: tuple[object, URLSafeTimedSerializer | None] | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        built = self._built
        if built is None or built[0] != keys:
            built = self._built = (keys, super().get_signing_serializer(app))
        return built[1]
