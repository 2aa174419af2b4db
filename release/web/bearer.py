"""Bearer keys (``Authorization: Bearer <key>``), read one way for every endpoint that takes
one: the API's admin endpoints, the gateway's allow-list query and /metrics.

werkzeug parses the header (scheme case-insensitive, token trimmed). Keys are compared as
SHA-256 digests, in constant time and against every accepted key, so timing tells neither
a key's length nor which key matched; a stored key may be a digest already (the API's
``sha256:`` keys).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from flask import request


def key_digest(key: str) -> str:
    """A key's SHA-256 in hex: what is compared, and what a ``sha256:`` setting stores."""
    return hashlib.sha256(key.encode()).hexdigest()


def presented_key() -> str | None:
    """The request's bearer key; None without one (no header, another scheme, no token)."""
    auth = request.authorization
    if auth is None or auth.type != "bearer" or not auth.token:
        return None
    return auth.token


def matching_digest(digests: Iterable[str]) -> str | None:
    """Which of ``digests`` (see :func:`key_digest`) the request's bearer key matches."""
    key = presented_key()
    if key is None:
        return None
    presented = key_digest(key)
    found = None
    for digest in digests:  # no early exit
        if hmac.compare_digest(presented, digest):
            found = digest
    return found


def matches_any(keys: Iterable[str]) -> bool:
    """The request carries one of ``keys`` (plain keys) as its bearer key."""
    return matching_digest(key_digest(key) for key in keys) is not None


def challenge(realm: str) -> dict[str, str]:
    """The header a 401 answer carries: which scheme, and for what."""
    return {"WWW-Authenticate": f'Bearer realm="{realm}"'}
