"""The authentication verdicts a recipient may trust: only those the gateway itself recorded.

A message can carry any Authentication-Results header its sender wrote, so only the header
whose authserv-id is the gateway's own (a node setting) counts, and only the topmost one
(RFC 8601 §5: the receiving server adds it above what came in). Rspamd records its verdicts
as symbols, which the push carries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from email.message import Message

from release.preview.headers import raw_values, text
from release.preview.model import AuthResult

SYMBOLS = {
    "R_SPF_ALLOW": ("spf", "pass"),
    "R_SPF_FAIL": ("spf", "fail"),
    "R_SPF_SOFTFAIL": ("spf", "softfail"),
    "R_SPF_NEUTRAL": ("spf", "neutral"),
    "R_SPF_NA": ("spf", "none"),
    "R_SPF_DNSFAIL": ("spf", "temperror"),
    "R_SPF_PERMFAIL": ("spf", "permerror"),
    "R_DKIM_ALLOW": ("dkim", "pass"),
    "R_DKIM_REJECT": ("dkim", "fail"),
    "R_DKIM_TEMPFAIL": ("dkim", "temperror"),
    "R_DKIM_PERMFAIL": ("dkim", "permerror"),
    "R_DKIM_NA": ("dkim", "none"),
    "DMARC_POLICY_ALLOW": ("dmarc", "pass"),
    "DMARC_POLICY_ALLOW_WITH_FAILURES": ("dmarc", "pass"),
    "DMARC_POLICY_REJECT": ("dmarc", "fail"),
    "DMARC_POLICY_QUARANTINE": ("dmarc", "fail"),
    "DMARC_POLICY_SOFTFAIL": ("dmarc", "fail"),
    "DMARC_NA": ("dmarc", "none"),
    "DMARC_BAD_POLICY": ("dmarc", "permerror"),
    "DMARC_DNSFAIL": ("dmarc", "temperror"),
    "ARC_ALLOW": ("arc", "pass"),
    "ARC_REJECT": ("arc", "fail"),
    "ARC_NA": ("arc", "none"),
}
METHODS = ("spf", "dkim", "dmarc", "arc")
RESULT = re.compile(r"\b(spf|dkim|dmarc|arc)\s*=\s*([a-z]+)((?:\s+[a-z]+(?:\.[a-z-]+)?\s*=\s*[^\s;]+)*)", re.I)
DETAIL = re.compile(r"\b(?:smtp\.mailfrom|header\.d|header\.from|header\.i)\s*=\s*([^\s;]+)", re.I)
HEADER_LIMIT = 2000
COMMENT = re.compile(r"\([^()]*\)")
COMMENT_DEPTH = 5


def from_symbols(symbols: Iterable[str]) -> tuple[AuthResult, ...]:
    """Rspamd's verdicts, one per method, in a fixed order."""
    found: dict[str, AuthResult] = {}
    for symbol in symbols:
        method_result = SYMBOLS.get(symbol)
        if method_result and method_result[0] not in found:
            found[method_result[0]] = AuthResult(*method_result)
    return tuple(found[m] for m in METHODS if m in found)


def from_header(message: Message, authserv_id: str) -> tuple[AuthResult, ...]:
    """The verdicts in the topmost Authentication-Results header of ``authserv_id``."""
    if not authserv_id:
        return ()
    for value in raw_values(message, "Authentication-Results"):
        header = _uncommented(text(value, HEADER_LIMIT))
        server, _, rest = header.partition(";")
        if server.split()[:1] != [authserv_id]:
            continue
        results = []
        for method, result, properties in RESULT.findall(rest):
            detail = DETAIL.search(properties)
            results.append(AuthResult(method.lower(), result.lower(), detail.group(1)[:200] if detail else ""))
        return tuple(results)
    return ()


def _uncommented(value: str) -> str:
    """``value`` without its comments (nested to :data:`COMMENT_DEPTH`). Servers often add one
    after a result ("dkim=fail (bad signature) header.d=..."), and the detail after it was
    lost; a ";" inside one ended the verdict early."""
    for _ in range(COMMENT_DEPTH):
        value, found = COMMENT.subn(" ", value)
        if not found:
            break
    return value
