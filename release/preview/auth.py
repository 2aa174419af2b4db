"""The authentication verdicts a recipient may trust: only those the gateway itself recorded.

Never an Authentication-Results header: the preview reads the message as it was received
(Rspamd's push, Halon's .eml), so any such header in it came from upstream, where a sender
can write one naming any server. Rspamd records its verdicts as symbols, which the push
carries; Halon keeps none where the service can read them.
"""

from __future__ import annotations

from collections.abc import Iterable

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


def from_symbols(symbols: Iterable[str]) -> tuple[AuthResult, ...]:
    """Rspamd's verdicts, one per method, in a fixed order."""
    found: dict[str, AuthResult] = {}
    for symbol in symbols:
        method_result = SYMBOLS.get(symbol)
        if method_result and method_result[0] not in found:
            found[method_result[0]] = AuthResult(*method_result)
    return tuple(found[m] for m in METHODS if m in found)
