"""Flask's signed-cookie session, with its signer built once instead of on every request,
and a short way to save the session the report page makes.

The session holds the CSRF token of the report form, so the report page, the service's
hottest page, saves one on every first visit. Flask builds a new serializer for every
request, even one that sends no cookie, and itsdangerous test-serialises ``{}`` each time to
learn the serializer's type: about a tenth of a millisecond per page view, spent twice (open
and save) for nothing. A session that holds only the CSRF secret is written straight from
parts built once (release/csrf.py); any other goes the generic way. The cookie's format,
keys, options and signature are Flask's own.
"""

from __future__ import annotations

from flask import Flask
from flask.sessions import SecureCookieSessionInterface, SessionMixin
from flask.wrappers import Response
from itsdangerous import URLSafeTimedSerializer
from werkzeug.http import dump_cookie

from release.web.csrf import FIELD, RAW_TOKEN, FastSigner, session_payload


class CachedSignerSessionInterface(SecureCookieSessionInterface):
    """SecureCookieSessionInterface; the serializer is rebuilt only when the keys change."""

    def __init__(self) -> None:
        self._built: tuple[object, URLSafeTimedSerializer | None, FastSigner | None] | None = None
        self._cookie: tuple[str, str] | None = None  # Set-Cookie: what comes before and after the value

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        return self._serializer_and_signer(app)[0]

    def _serializer_and_signer(self, app: Flask) -> tuple[URLSafeTimedSerializer | None, FastSigner | None]:
        keys = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        built = self._built
        if built is None or built[0] != keys:
            serializer = super().get_signing_serializer(app)
            signer = FastSigner(serializer.make_signer()) if serializer is not None else None
            built = self._built = (keys, serializer, signer)
        return built[1], built[2]

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Save as Flask does; a new session holding only a CSRF secret, without its detours."""
        raw = session.get(FIELD) if len(session) == 1 and session.modified and not session.permanent else None
        signer = self._serializer_and_signer(app)[1] if isinstance(raw, str) and RAW_TOKEN.fullmatch(raw) else None
        if raw is None or signer is None:
            super().save_session(app, session, response)
            return
        before, after = self._cookie or self._cookie_parts(app)
        response.headers.add("Set-Cookie", before + signer.sign(session_payload(raw)) + after)
        response.vary.add("Cookie")

    def _cookie_parts(self, app: Flask) -> tuple[str, str]:
        """The session's Set-Cookie header around its value, as Flask's options make it
        (the value is URL-safe base64 and dots, which a cookie carries unquoted)."""
        name = self.get_cookie_name(app)
        header = dump_cookie(
            name, "v", domain=self.get_cookie_domain(app), path=self.get_cookie_path(app),
            secure=self.get_cookie_secure(app), httponly=self.get_cookie_httponly(app),
            samesite=self.get_cookie_samesite(app), partitioned=self.get_cookie_partitioned(app),
        )  # fmt: skip
        before = f"{name}="
        if not header.startswith(before + "v"):
            raise ValueError(f"unexpected Set-Cookie layout: {header!r}")
        self._cookie = (before, header[len(before) + 1 :])
        return self._cookie
