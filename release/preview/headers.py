"""Header values a person reads: RFC 2047 decoded, control characters gone, bounded.

Addresses are split from the raw header first and display names decoded after, so an
encoded word cannot smuggle in a second address. A display name that carries an address
of its own ("support@bank.example" <x@elsewhere.example>) is the oldest phishing trick: it
is reported, not hidden.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from datetime import UTC, datetime
from email.header import decode_header
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

from release.preview.model import Headers, Mailbox

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]+")
# An address-shaped word inside a display name.
ADDRESS_IN_NAME = re.compile(r"[^\s<>()\[\]\"',;:@]+@(?:[^\s<>()\[\]\"',;:@.]+\.)+[^\s<>()\[\]\"',;:@.]{2,}")
# One mailbox: a display name without quotes, commas or angle brackets, then <address>.
BARE_NAME = re.compile(r'\s*([^"<>,]+?)\s*<([^<>\s]+)>\s*')
BARE_NAME_LIMIT = 1000
NAME_LIMIT = 200
ADDRESS_LIMIT = 320
SUBJECT_LIMIT = 1000
MAX_ADDRESSES = 50
# An RFC 2047 encoded word, as leniently as the standard library's decoder finds one (its text
# may hold anything but "?="), so that every word it would decode is masked here first.
ENCODED_WORD = re.compile(r"=\?[^?]*\?[qQbB]\?.*?\?=")
# Codecs that are text encodings in name only: they interpret escapes, not characters.
NOT_CHARSETS = {"idna", "punycode", "raw-unicode-escape", "unicode-escape", "utf-7", "undefined"}


def raw_values(message: Message, name: str) -> list[str]:
    """Every ``name`` header as written; raw 8-bit bytes (a UTF-8 header without encoded
    words) read as UTF-8, anything undecodable replaced, so no lone surrogate gets out."""
    wanted = name.casefold()
    return [_unescape(v) for k, v in message.raw_items() if k.casefold() == wanted and isinstance(v, str)]


def first(message: Message, name: str) -> str | None:
    values = raw_values(message, name)
    return values[0] if values else None


def _unescape(value: str) -> str:
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def text(value: str | None, limit: int) -> str:
    """A header value decoded for reading: encoded words resolved (any charset, mixed),
    whitespace folded, control and bidi characters out, at most ``limit`` characters."""
    raw = (value or "")[: limit * 4]
    try:
        decoded = _decode_words(raw)
    except (ValueError, LookupError, UnicodeError, AssertionError, IndexError):
        decoded = raw
    return " ".join(CONTROL.sub(" ", decoded).split())[:limit]


def _decode_words(raw: str) -> str:
    """Each piece :func:`decode_header` splits ``raw`` into, decoded on its own.

    ``make_header`` would do it all at once, but one word in an unknown charset or with a
    broken byte made it fail as a whole (the reader saw the raw ``=?...?=`` text), and it read
    the plain text between words as ASCII, so a raw UTF-8 header with one encoded word came
    out as ``\\u043f...`` escapes. Plain pieces come back from ``decode_header`` encoded as
    raw-unicode-escape, which is undone here; encoded ones are read with their charset (UTF-8
    where that is unknown), replacing what does not decode."""
    pieces: list[str] = []
    previous: bool | None = None
    for data, charset in decode_header(raw):
        if isinstance(data, str):  # no encoded word at all
            return data
        encoded = charset is not None
        if previous is not None and encoded != previous:
            pieces.append(" ")  # an encoded word and plain text are separate words
        if charset is None:
            pieces.append(data.decode("raw-unicode-escape", "replace"))
        else:
            pieces.append(data.decode(codec(charset.partition("*")[0]), "replace"))
        previous = encoded
    return "".join(pieces)


def codec(declared: str | None) -> str:
    """The codec to read text declared as ``declared`` with: that charset, or UTF-8 where it
    is missing, unknown or not a character set at all (us-ascii mail is very often UTF-8)."""
    try:
        name = codecs.lookup(declared or "utf-8").name
    except (LookupError, TypeError, ValueError):
        return "utf-8"
    return "utf-8" if name in NOT_CHARSETS or name == "ascii" else name


def mailboxes(message: Message, name: str, header_chars: int) -> tuple[Mailbox, ...]:
    """The addresses of every ``name`` header (a message may carry it twice)."""
    values = [_quote_bare_name(v[:header_chars]) for v in raw_values(message, name)]
    words: list[str] = []
    mark = "sfrword"
    while any(mark in v for v in values):
        mark += "x"

    def masked(match: re.Match[str]) -> str:
        words.append(match.group(0))
        return f"{mark}{len(words) - 1}{mark}"

    def unmasked(value: str) -> str:
        return re.sub(f"{mark}(\\d+){mark}", lambda m: words[int(m.group(1))], value)

    # An encoded word is one opaque word while addresses are split: its decoded text (which
    # may look like "<x@y.example>") never becomes an address of its own.
    values = [ENCODED_WORD.sub(masked, v) for v in values]
    found = []
    for display, address in _split(values)[:MAX_ADDRESSES]:
        if display or address:
            found.append(Mailbox(text(unmasked(display), NAME_LIMIT), _as_written(unmasked(address))))
    return tuple(found)


def _as_written(address: str) -> str:
    """An address as written, never decoded: ``<=?utf-8?q?x=40bank.example?=>`` is no address
    at bank.example, and must not be shown as one."""
    return " ".join(CONTROL.sub(" ", address).split())[:ADDRESS_LIMIT]


def _quote_bare_name(value: str) -> str:
    """``security@bank.example <x@elsewhere.example>`` with its display name quoted: unquoted,
    the library reads the name as the address, where mail clients and DMARC read the angle
    address."""
    if len(value) > BARE_NAME_LIMIT or value.count("<") != 1:
        return value
    found = BARE_NAME.fullmatch(value)
    if found is None or "@" not in found.group(1):
        return value
    return f'"{found.group(1).strip()}" <{found.group(2)}>'


def _split(values: list[str]) -> list[tuple[str, str]]:
    """``getaddresses``, which recurses once per nested comment: a header of a thousand "("
    raised RecursionError, and with it every header went unread. Comments say nothing a
    reader needs, so where nesting is that deep they are read as plain text."""
    try:
        return getaddresses(values)
    except RecursionError:
        return getaddresses([v.replace("(", " ").replace(")", " ") for v in values])


def as_read(text: str) -> str:
    """Text as a reader takes it in: compatibility forms folded (fullwidth "＠" is "@", "․" is
    "."), invisible format characters (soft hyphen, word joiner) gone."""
    folded = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in folded if unicodedata.category(ch) != "Cf")


def name_claim(mailbox: Mailbox | None) -> str:
    """An address the display name shows that is not the mailbox's own ("" when none)."""
    if mailbox is None:
        return ""
    own = mailbox.address.casefold()
    for claimed in ADDRESS_IN_NAME.findall(as_read(mailbox.name)):
        if claimed.casefold() != own:
            return claimed
    return ""


def read_headers(message: Message, header_chars: int) -> Headers:
    """The headers a recipient needs to judge the message."""
    senders = mailboxes(message, "From", header_chars)
    sender = senders[0] if senders else None
    own = sender.address.casefold() if sender else ""
    reply_to = tuple(m for m in mailboxes(message, "Reply-To", header_chars) if m.address.casefold() != own)
    return Headers(
        sender=sender,
        reply_to=reply_to,
        to=mailboxes(message, "To", header_chars),
        cc=mailboxes(message, "Cc", header_chars),
        date=_date(first(message, "Date")),
        subject=text(first(message, "Subject"), SUBJECT_LIMIT),
        name_claims=name_claim(sender),
    )


def _date(value: str | None) -> datetime | None:
    """The Date header, or None where it is no date. A zone of -0000 means UTC with the
    sender's own zone unknown (RFC 5322 §3.3); the library returns it without a zone, as it
    does a date whose zone is left out, and both are read as UTC, as mail readers do."""
    if value is None:
        return None
    try:
        parsed = parsedate_to_datetime(value[:200])
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    parsed = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    try:
        parsed.astimezone(UTC)  # pages show it in UTC: year 9999 at -2359 would overflow there
    except OverflowError:
        return None
    return parsed
