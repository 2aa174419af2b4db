"""From a held message's bytes to a :class:`Preview`, within :class:`Limits`.

The parser is the standard library's, fed in chunks so the deadline is checked as it goes;
the tree is walked without recursion, counting parts and depth. Whatever a hostile message
does (bad MIME, unknown charsets, nesting, a flood of parts, a parser bug it triggers) ends
as a :class:`Problem` the page names in plain words, never an exception.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from email.feedparser import BytesFeedParser
from email.message import Message
from email.policy import compat32
from email.utils import collapse_rfc2231_value

from release.preview import attachments, auth, html
from release.preview.headers import CONTROL, codec, read_headers, text
from release.preview.limits import Deadline, Limits, TooComplex, TooSlow
from release.preview.links import links_in_text
from release.preview.model import Attachment, AuthResult, Headers, Link, Preview, Problem

log = logging.getLogger(__name__)

# The parser checks every line against the boundary of each enclosing multipart, so one
# chunk of short lines in a message nested a few hundred deep costs seconds: at 64 KB a
# chunk ran the two-second cap to eight. Feeding is no slower in small chunks.
CHUNK = 8 * 1024
# The header section as the standard library's parser tells it (feedparser's headerRE):
# lines that are a field name and its colon, a folded continuation or an mbox "From " line.
HEADER_SECTION = re.compile(rb"(?:(?:[\x21-\x39\x3b-\x7e]*:|[\t ]|From )[^\n]*(?:\n|\Z))*")
# The fields the preview reads, each with its continuation lines.
WANTED = re.compile(
    rb"^(?:from|reply-to|to|cc|date|subject|authentication-results):[^\n]*\n?(?:[\t ][^\n]*\n?)*", re.I | re.M
)
FIELD_LIMIT = 16 * 1024
FIELDS_PER_NAME = 20
# The standard library parses the parameters of Content-Type and Content-Disposition in
# quadratic time (email.message._parseparam counts quotes from the start at every ";"), once
# for each parameter asked for and inside calls the deadline cannot interrupt: an 80 KB
# Content-Type took 11 s of CPU. A message with such a field longer than this is too complex.
MIME_FIELD = re.compile(rb"^content-(?:type|disposition)[\t ]*:[^\n]*\n?(?:[\t ][^\n]*\n?)*", re.I | re.M)
MIME_FIELD_LIMIT = 8 * 1024
NAME_LIMIT = 200


def build_preview(data: bytes, size: int, limits: Limits, *, symbols: Iterable[str] = ()) -> Preview:
    """The preview of a message whose first bytes are ``data`` and whole size ``size``;
    ``symbols`` are the filter's own verdicts (rspamd; see auth.py)."""
    deadline = Deadline(limits.seconds)
    verdicts = auth.from_symbols(symbols)
    try:
        head = _parse(_header_block(data), deadline)
        headers = read_headers(head, limits.header_chars)
    except TooSlow:
        return Preview(Headers(), size, verdicts, problem=Problem.TOO_SLOW)
    except Exception:  # noqa: BLE001 - hostile bytes; any failure is "could not display"
        log.warning("preview: the headers could not be read", exc_info=True)
        return Preview(Headers(), size, verdicts, problem=Problem.MALFORMED)
    if size > limits.max_bytes or len(data) < size:
        return Preview(headers, size, verdicts, problem=Problem.TOO_LARGE)
    try:
        return _body(_parse(data, deadline), headers, size, verdicts, limits, deadline)
    except TooSlow:
        problem = Problem.TOO_SLOW
    except (TooComplex, RecursionError):
        problem = Problem.TOO_COMPLEX
    except Exception:  # noqa: BLE001 - as above
        log.warning("preview: the body could not be read", exc_info=True)
        problem = Problem.MALFORMED
    return Preview(headers, size, verdicts, problem=problem)


def _header_block(data: bytes) -> bytes:
    """The fields the preview reads, found in the whole header section however long, each
    cut to :data:`FIELD_LIMIT`, at most :data:`FIELDS_PER_NAME` of one name, in order.

    The section used to be cut at 256 KB instead, so one long junk header above From and
    Subject hid both while the body was still shown."""
    section = HEADER_SECTION.match(data)
    counts: dict[bytes, int] = {}
    kept = []
    for field in WANTED.finditer(data, 0, section.end() if section else 0):
        name = field.group(0).split(b":", 1)[0].lower()
        counts[name] = counts.get(name, 0) + 1
        if counts[name] <= FIELDS_PER_NAME:
            kept.append(field.group(0)[:FIELD_LIMIT].rstrip(b"\r\n"))
    return b"\r\n".join(kept) + b"\r\n\r\n"


def _parse(data: bytes, deadline: Deadline) -> Message:
    if any(len(field.group(0)) > MIME_FIELD_LIMIT for field in MIME_FIELD.finditer(data)):
        raise TooComplex
    parser = BytesFeedParser(policy=compat32)
    for start in range(0, len(data), CHUNK):
        parser.feed(data[start : start + CHUNK])
        deadline.check()
    message = parser.close()
    deadline.check()
    return message


def _body(
    message: Message, headers: Headers, size: int, verdicts: tuple[AuthResult, ...], limits: Limits, deadline: Deadline
) -> Preview:
    plain: str | None = None
    markup: str | None = None
    found: list[Attachment] = []
    truncated = False
    for role, part, kind, name in _roles(message, limits, deadline):
        if role == TEXT and plain is None:
            plain, cut = _text(part, limits.text_chars)
        elif role == HTML and markup is None:
            markup, cut = _text(part, limits.html_chars)
        elif role == ATTACHMENT and len(found) < limits.max_attachments:
            found.append(_attachment(len(found), part, kind, name))
            cut = False
        else:
            cut = role == ATTACHMENT
        truncated |= cut
        deadline.check()
    links: list[Link] = []
    safe_html = None
    if markup is not None:
        safe_html, links = html.sanitise(markup, deadline, limits.max_links, limits.html_depth)
    elif plain is not None:
        links = links_in_text(plain, limits.max_links)
    deadline.check()
    return Preview(headers, size, verdicts, plain, safe_html, tuple(links), tuple(found), truncated=truncated)


def attachment_data(data: bytes, size: int, limits: Limits, index: int) -> tuple[Attachment, bytes] | None:
    """The ``index``-th attachment as :func:`build_preview` lists it, with its decoded bytes;
    None where the preview lists no such attachment (or could not read the message)."""
    if size > limits.max_bytes or len(data) < size or not 0 <= index < limits.max_attachments:
        return None
    deadline = Deadline(limits.seconds)
    try:
        found = 0
        for role, part, kind, name in _roles(_parse(data, deadline), limits, deadline):
            if role != ATTACHMENT:
                continue
            if found == index:
                return _attachment(index, part, kind, name), _decoded(part)
            found += 1
    except (TooSlow, TooComplex, RecursionError):
        return None
    except Exception:  # noqa: BLE001 - hostile bytes, as in build_preview
        log.warning("preview: an attachment could not be read", exc_info=True)
    return None


TEXT, HTML, ATTACHMENT = "text", "html", "attachment"


def _roles(message: Message, limits: Limits, deadline: Deadline) -> Iterable[tuple[str, Message, str, str]]:
    """Each content part with what it is to the reader: body text, body HTML (inline, no
    file name) or an attachment; with its type and file name."""
    for part in _leaves(message, limits, deadline):
        kind = part.get_content_type()
        name = _filename(part)
        inline = part.get_content_disposition() != "attachment" and not name
        if inline and kind == "text/plain":
            yield TEXT, part, kind, name
        elif inline and kind == "text/html":
            yield HTML, part, kind, name
        else:
            yield ATTACHMENT, part, kind, name


def _leaves(message: Message, limits: Limits, deadline: Deadline) -> Iterable[Message]:
    """The parts that carry content, in reading order; a forwarded message is one leaf."""
    stack: list[tuple[Message, int]] = [(message, 0)]
    seen = 0
    while stack:
        part, depth = stack.pop()
        seen += 1
        if seen > limits.max_parts or depth > limits.max_depth:
            raise TooComplex
        deadline.check()
        payload = part.get_payload()
        if part.get_content_maintype() == "multipart" and isinstance(payload, list):
            if seen + len(stack) + len(payload) > limits.max_parts:
                raise TooComplex
            stack.extend((child, depth + 1) for child in reversed(payload) if isinstance(child, Message))
        else:
            yield part


def _filename(part: Message) -> str:
    """The name a mail client saves the part under: Content-Disposition's ``filename*`` (RFC
    2231) before its ``filename`` (RFC 6266), then Content-Type's ``name``. A long name keeps
    its end, where the extension that decides what opens it is."""
    try:
        disposition = [v for k, v in (part.get_params(header="content-disposition") or [])[1:] if k == "filename"]
        declared = [v for k, v in (part.get_params() or [])[1:] if k == "name"]
    except (ValueError, LookupError, UnicodeError, TypeError, IndexError):
        return "?"
    encoded = [v for v in disposition if isinstance(v, tuple)]  # what filename* decoded to
    name = (encoded or disposition or declared or [""])[0]
    try:
        name = collapse_rfc2231_value(name) if isinstance(name, tuple) else name
    except (LookupError, UnicodeError, TypeError, ValueError):
        return "?"
    name = text(str(name), NAME_LIMIT * 4)
    return name if len(name) <= NAME_LIMIT else name[: NAME_LIMIT - 41] + "…" + name[-40:]


def _decoded(part: Message) -> bytes:
    if part.get_content_type() == "message/rfc822" or isinstance(part.get_payload(), list):
        return b""  # a forwarded message: listed, not opened
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _text(part: Message, limit: int) -> tuple[str, bool]:
    """A text part as characters (its declared charset where it is a real one), at most
    ``limit``, and whether it was cut."""
    data = _decoded(part)
    charset = codec(part.get_content_charset())
    try:
        decoded = data.decode(charset, "replace")
    except LookupError:
        decoded = data.decode("utf-8", "replace")
    decoded = decoded.replace("\r\n", "\n").replace("\x00", "")
    return decoded[:limit], len(decoded) > limit


def _attachment(index: int, part: Message, kind: str, name: str) -> Attachment:
    data = _decoded(part)
    declared = CONTROL.sub("", kind)[:100]
    described = attachments.describe(index, name or _unnamed(kind), declared, data)
    if kind == "message/rfc822":
        return Attachment(index, described.name, declared, kind, -1)
    return described


def _unnamed(kind: str) -> str:
    return "(forwarded message)" if kind == "message/rfc822" else "(no name)"
