"""What a preview shows, as plain values the templates render (every string is stranger text,
escaped by Jinja; only :attr:`Preview.html` is markup, and only after sanitising)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class Problem(enum.StrEnum):
    """Why the body is not shown; the headers may still be."""

    TOO_LARGE = "too_large"  # over the size cap: headers only
    MALFORMED = "malformed"  # not a mail we can read
    TOO_COMPLEX = "too_complex"  # too many parts or too deeply nested
    TOO_SLOW = "too_slow"  # the time cap ran out


@dataclass(frozen=True)
class Mailbox:
    """One address of a header, with the display name the sender chose."""

    name: str
    address: str


@dataclass(frozen=True)
class AuthResult:
    """One verdict the gateway recorded (SPF, DKIM, DMARC, ARC)."""

    method: str  # "spf", "dkim", "dmarc", "arc"
    result: str  # "pass", "fail", "softfail", "neutral", "none", "temperror", "permerror", "policy"

    @property
    def passed(self) -> bool:
        return self.result == "pass"

    @property
    def failed(self) -> bool:
        return self.result in ("fail", "softfail", "permerror", "policy")


@dataclass(frozen=True)
class Link:
    """A link in the body: where it really goes, and whether its text claims somewhere else."""

    url: str  # as written, bounded (shown as text, never as a link)
    scheme: str
    host: str  # the real host, in ASCII (punycode shows a look-alike for what it is)
    domain: str  # the registrable domain of ``host`` ("example.co.uk")
    text: str  # the visible text, bounded
    claimed_domain: str = ""  # a different domain the visible text names
    international: bool = False  # the host has non-ASCII labels (look-alike risk)

    @property
    def dangerous(self) -> bool:
        """A scheme that runs code or carries a whole document (javascript:, data:, ...)."""
        return self.scheme not in ("http", "https", "mailto")

    @property
    def mismatch(self) -> bool:
        return bool(self.claimed_domain)


@dataclass(frozen=True)
class Attachment:
    """One attachment: what the sender says it is and what its bytes say."""

    index: int  # its position among the attachments (the download URL's part number)
    name: str
    declared_type: str
    sniffed_type: str
    size: int
    executable: bool = False
    archive: bool = False
    # Inside an archive: executable members, encryption, an unlikely compression ratio.
    warnings: tuple[str, ...] = ()
    members: tuple[str, ...] = ()  # an archive's first member names

    @property
    def risky(self) -> bool:
        return self.executable or self.archive or bool(self.warnings)


@dataclass(frozen=True)
class Headers:
    """The headers that matter to a recipient deciding whether to trust a message."""

    sender: Mailbox | None = None  # From
    reply_to: tuple[Mailbox, ...] = ()  # only when it differs from From
    to: tuple[Mailbox, ...] = ()
    cc: tuple[Mailbox, ...] = ()
    date: datetime | None = None
    subject: str = ""
    # From's display name carries an address other than From's own ("PayPal <x@y>" style).
    name_claims: str = ""


@dataclass(frozen=True)
class Preview:
    """Everything the release page shows of a message."""

    headers: Headers
    size: int
    auth: tuple[AuthResult, ...] = ()
    text: str | None = None
    html: str | None = None  # sanitised: no script, no forms, no remote content
    links: tuple[Link, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    problem: Problem | None = None
    truncated: bool = False  # the text or the link list was cut at its cap

    @property
    def body_shown(self) -> bool:
        return self.problem is None
