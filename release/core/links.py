"""Signed report links (built by the gateway, verified here) and recipient release tokens.

Report link contract (DESIGN.md §2.1): query ``n``, ``m``, ``t``, ``s`` where ``s`` is the
lowercase hex HMAC-SHA256 of ``"v1:" + n + ":" + m + ":" + t`` under a key shared with the
gateway. The gateway computes it offline in HSL, so the format is fixed: hex, no padding.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

NODE_RE = re.compile(r"\A[a-z0-9-]{1,63}\Z")
# Halon transaction ids are UUIDs; other gateways use similar opaque ids. Keep it strict.
MESSAGE_ID_RE = re.compile(r"\A[A-Za-z0-9._@:-]{1,128}\Z")
# Canonical decimal, as the gateway prints a Unix time: no sign, no leading zeros.
TIME_RE = re.compile(r"\A(?:0|[1-9][0-9]{0,11})\Z")
SIGNATURE_RE = re.compile(r"\A[0-9a-f]{64}\Z")
TOKEN_RE = re.compile(r"\A[A-Za-z0-9_-]{43}\Z")
TOKEN_DOMAIN = b"sender-fp-release/release-token/v1:"
FIELDS = ("n", "m", "t", "s")  # a report link's query parameters, in the order links carry them


class LinkError(Exception):
    """A report link cannot be used; ``status`` is the HTTP status to answer with."""

    status = 400


class LinkInvalid(LinkError):
    """Missing, malformed, tampered or unknown-node link."""


class LinkExpired(LinkError):
    """Genuine link whose quarantined copy is past the short retention."""

    status = 410


@dataclass(frozen=True)
class ReportLink:
    """The verified fields of a report link."""

    node: str
    message_id: str
    issued_at: int

    def query(self, signature: str) -> dict[str, str]:
        """The query parameters for this link with the given signature."""
        return {"n": self.node, "m": self.message_id, "t": str(self.issued_at), "s": signature}


def sign(key: str, node: str, message_id: str, issued_at: int) -> str:
    """Lowercase hex HMAC-SHA256 over the v1 link message, exactly as the HSL script builds it."""
    message = f"v1:{node}:{message_id}:{issued_at}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def build_report_url(public_url: str, key: str, node: str, message_id: str, issued_at: int) -> str:
    """A complete report link, as the gateway would put it into the reject text."""
    link = ReportLink(node, message_id, issued_at)
    return f"{public_url.rstrip('/')}/report?{urlencode(link.query(sign(key, node, message_id, issued_at)))}"


def verify(
    params: Mapping[str, str],
    *,
    keys: Iterable[str],
    nodes: Iterable[str],
    max_age_seconds: int | Callable[[], int],
    now: float,
    clock_skew_seconds: int = 300,
) -> ReportLink:
    """Check a link's fields, signature and age; raise LinkInvalid or LinkExpired.

    ``max_age_seconds`` may be a callable: it is then asked only for a genuine link, so a
    stranger's garbage never costs a database read (the retention is an admin setting).
    Fields must match exactly (anchored with ``\\Z``: ``$`` lets a trailing newline through; no leading
    zeros in ``t``), so one message and time have exactly one valid link per key.
    """
    node, message_id, issued, signature = (params.get(k, "") for k in FIELDS)
    if not (
        NODE_RE.fullmatch(node)
        and MESSAGE_ID_RE.fullmatch(message_id)
        and TIME_RE.fullmatch(issued)
        and SIGNATURE_RE.fullmatch(signature)
    ):
        raise LinkInvalid("The link is incomplete or damaged.")
    if node not in set(nodes):
        raise LinkInvalid("The link names a mail server this service does not know.")
    issued_at = int(issued)
    # Every key is checked, so timing does not reveal which one matched.
    matches = [hmac.compare_digest(sign(key, node, message_id, issued_at), signature) for key in keys]
    if not any(matches):
        raise LinkInvalid("The link's signature does not match; it may have been altered.")
    if issued_at > now + clock_skew_seconds:
        raise LinkInvalid("The link's time lies in the future.")
    max_age = max_age_seconds() if callable(max_age_seconds) else max_age_seconds
    if now - issued_at > max_age + clock_skew_seconds:
        raise LinkExpired("The message is no longer kept: it is older than the retention time.")
    return ReportLink(node, message_id, issued_at)


def new_token_nonce() -> str:
    """Random per-recipient material (stored) from which the release token is derived."""
    return secrets.token_hex(16)


def release_token(secret_key: str, nonce: str) -> str:
    """The URL-safe release token: HMAC of the stored nonce under the app secret (256 bits).

    Deriving instead of storing lets a retried notification carry the same working link,
    while the database alone (nonce + hash) does not yield a token.
    """
    digest = hmac.new(secret_key.encode(), TOKEN_DOMAIN + nonce.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def token_hash(token: str) -> str:
    """What the database stores and looks tokens up by."""
    return hashlib.sha256(token.encode()).hexdigest()


def is_token_shaped(token: str) -> bool:
    """Cheap format check before touching the database."""
    return bool(TOKEN_RE.fullmatch(token))
