"""The report form's CSRF token, and the session cookie that carries its secret half, made
without the generic machinery on the way.

Every first view of the report page (each sender, each mail scanner) mints a token and
saves a new session. Flask-WTF builds a serializer per token, itsdangerous a signer per
signature and a zlib attempt per payload, and Flask's session interface walks its tagged
JSON and cookie options on every save: measured under gunicorn, that was the report page's
largest cost after Flask itself (bench/README.md). Here both are made from parts built once:
the keys itsdangerous derives, its signature algorithm and separator, the cookie's options.

The output is what the libraries make: Flask-WTF validates these tokens and Flask opens
these cookies with their own code (tests/test_csrf.py checks both, and the bytes). The one
difference is that a payload is never zlib-compressed, which the readers accept either way
(a 40-digit random token never shrinks by compression).
"""

from __future__ import annotations

import hashlib
import os
import re

from flask import g, session
from itsdangerous import Signer, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode, int_to_bytes

FIELD = "csrf_token"  # Flask-WTF's default field and session key (WTF_CSRF_FIELD_NAME)
TOKEN_SALT = "wtf-csrf-token"  # noqa: S105 - Flask-WTF's salt, not a secret
# What Flask-WTF stores in the session: a SHA-1 in hex. Only such values take the fast path,
# so their JSON needs no escaping whatever the app's JSON settings.
RAW_TOKEN = re.compile(r"[0-9a-f]{40}")


class FastSigner:
    """``TimestampSigner.sign`` with the signer's key derived once instead of per call."""

    def __init__(self, signer: Signer) -> None:
        if not isinstance(signer, TimestampSigner):
            raise TypeError(f"a timed signer is needed, not {type(signer).__name__}")
        self._signer = signer
        self._key = signer.derive_key()
        self._sep = signer.sep

    def sign(self, payload: bytes) -> str:
        """``payload.timestamp.signature``, as the signer makes it (URL-safe base64 parts)."""
        value = payload + self._sep + base64_encode(int_to_bytes(self._signer.get_timestamp()))
        return (value + self._sep + base64_encode(self._signer.algorithm.get_signature(self._key, value))).decode()


class CsrfTokens:
    """Flask-WTF's ``generate_csrf`` for one secret key: same token, same session entry."""

    def __init__(self, secret_key: str | bytes | None) -> None:
        if not secret_key:
            raise ValueError("CSRF tokens need a secret key")
        self._signer = FastSigner(URLSafeTimedSerializer(secret_key, salt=TOKEN_SALT).make_signer())

    def token(self) -> str:
        """The request's signed token; a new secret in the session if it has none yet."""
        token: str | None = g.get(FIELD)
        if token is None:
            raw = session.get(FIELD)
            if not isinstance(raw, str) or not RAW_TOKEN.fullmatch(raw):
                raw = session[FIELD] = hashlib.sha1(os.urandom(64)).hexdigest()  # noqa: S324 - Flask-WTF's
            token = self._signer.sign(base64_encode(f'"{raw}"'))
            setattr(g, FIELD, token)
        return token


def session_payload(raw: str) -> bytes:
    """Flask's serialised session ``{"csrf_token": raw}`` (tagged JSON, compact), URL-safe."""
    return base64_encode(f'{{"{FIELD}":"{raw}"}}')
