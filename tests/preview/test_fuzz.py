"""Fuzzing build_preview with Hypothesis, on arbitrary bytes and on generated MIME (nested
multiparts with random boundaries, types, charsets and transfer encodings, garbage bodies,
encoded words): it never raises, never takes long, never returns a string that is not
valid UTF-8, and its HTML never carries anything that runs or loads."""

from __future__ import annotations

import base64
import dataclasses
import enum
import quopri
import re
import time
from collections.abc import Iterator
from datetime import datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from release.preview import Limits, Preview, build_preview
from release.preview.balance import VOID, balance, renamed
from release.preview.build import attachment_data
from release.preview.html import ATTRIBUTES, DROPPED_WITH_CONTENT, TAGS
from release.preview.limits import Deadline

LIMITS = Limits(seconds=2.0)
# Per call, in CPU seconds of this process: the deadline is wall time, and a loaded test
# machine stretches wall time, so this is the cap plus room, not the cap itself.
CPU_SECONDS = 2 * LIMITS.seconds + 1
FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,  # nothing written to the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
TAG = re.compile(r"<[^<>]*>")
ATTRIBUTE_VALUE = re.compile(r'="[^"]*"')


def strings(value: Any, path: str = "preview") -> Iterator[tuple[str, str]]:
    """Every string in ``value``, recursively through dataclasses and tuples, with its path."""
    if isinstance(value, str):
        yield path, value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from strings(getattr(value, field.name), f"{path}.{field.name}")
    elif isinstance(value, tuple):
        for i, item in enumerate(value):
            yield from strings(item, f"{path}[{i}]")
    else:
        assert value is None or isinstance(value, int | bool | datetime | enum.Enum), (path, value)


def check(data: bytes, size: int | None = None, **kwargs: Any) -> Preview:
    """build_preview of ``data``, with every property the page relies on checked."""
    started = time.process_time()
    found = build_preview(data, len(data) if size is None else size, LIMITS, **kwargs)
    took = time.process_time() - started
    assert took < CPU_SECONDS, f"{took:.2f}s"
    assert isinstance(found, Preview)
    for path, value in strings(found):
        value.encode("utf-8")  # strict: a lone surrogate raises here
        assert "\x00" not in value or path.endswith(".text"), path
    if found.html is not None:
        assert_inert(found.html)
    if found.problem is not None:
        assert found.text is None and found.html is None and found.attachments == ()
    return found


def assert_inert(html: str) -> None:
    lowered = html.lower()
    assert "<script" not in lowered
    # Inside tags, with attribute values blanked (they are escaped, so they are text): no
    # event handler, no source, no link target.
    for tag in TAG.findall(lowered):
        bare = ATTRIBUTE_VALUE.sub('=""', tag)
        assert not re.search(r"\son\w+=", bare), tag
        assert not re.search(r"\s(src|href|srcset|background|action|formaction)=", bare), tag
        assert not bare.startswith(("<style", "<meta", "<form", "<iframe", "<base", "<svg", "<object", "<embed")), tag
        assert "url(" not in tag and "expression(" not in tag, tag


# --- (a) arbitrary bytes ---------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(data: bytes) -> None:
    check(data)


@FUZZ
@given(st.binary(max_size=2048), st.integers(min_value=0, max_value=5000))
def test_arbitrary_bytes_and_size(data: bytes, size: int) -> None:
    found = check(data, size)
    if size > len(data):
        assert found.problem is not None


@FUZZ
@given(
    st.lists(
        st.sampled_from([b"\r\n", b"\n", b"\r", b":", b" ", b"\t", b"=?", b"?=", b"--", b"<", b">", b'"']), max_size=60
    ),
    st.binary(max_size=200),
)
def test_arbitrary_structure_bytes(pieces: list[bytes], tail: bytes) -> None:
    check(b"".join(pieces) + tail)


# --- (b) generated MIME ----------------------------------------------------------------

CHARSETS = ["utf-8", "UTF-8", "iso-8859-1", "koi8-r", "windows-1252", "utf-7", "utf-16", "utf-16-le", "x-unknown"]
CHARSETS += ["", "us-ascii", "gb2312", "shift_jis", "idna", "unicode-escape", "rot13", "base64", '"', "utf-8*en"]
ENCODINGS = ["7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "uuencode", "bogus", ""]
TYPES = ["text/plain", "text/html", "application/octet-stream", "application/pdf", "image/png", "message/rfc822"]
TYPES += ["text/enriched", "application/zip", "bogus", "text/", "/html", "multipart/mixed"]
MARKUP = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    '<a href="https://evil.com/">paypal.com</a>',
    "<svg onload=alert(1)>",
    "<style>@import url(x)</style>",
    '<div style="background:url(x)">',
    "<iframe src=x>",
    "<form action=x>",
    "<meta http-equiv=refresh content=0>",
    "<b>",
    "</b>",
    "<p>",
    "<table><tr><td>",
    "<!--",
    "-->",
    "<![CDATA[",
    "&amp;",
    "&#0;",
    "&#xD800;",
    "<",
    ">",
    "<base href=x>",
    '<a href="https://x.example\\@y.example">',
    "<math><mi>",
    "<noscript>",
    "<plaintext>",
    "<div>",
    "</div>",
    "<li>",
    "<ul>",
    "<td>",
    "</tr>",
    "<a href=x>",
    "</a>",
    "<font color=red>",
    "<h1>",
    "</p>",
    "<textarea>",
    "<br/>",
    "</br>",
    "<head>",
    "<title>",
    "<body>",
    "<table>",
    "<select>",
    "<i>",
    "</i>",
    "<dd>",
    "<caption>",
    "<tbody>",
    "<div/>",
    "<img alt='a>b'>",
    '<a title="x',
    "</ a>",
    "</>",
    "<?x>",
    "<!doctype html>",
]
# Text, with lone surrogates U+DC80-U+DCFF that surrogateescape turns into raw bytes.
text = st.text(st.characters(codec="utf-8") | st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF), max_size=40)


@st.composite
def encoded_word(draw: st.DrawFn) -> str:
    charset = draw(st.sampled_from(CHARSETS))
    raw = draw(st.binary(max_size=30))
    if draw(st.booleans()):
        payload = base64.b64encode(raw).decode("ascii")
        if draw(st.booleans()):
            payload = payload[: draw(st.integers(0, len(payload)))]  # broken padding
        return f"=?{charset}?b?{payload}?="
    return f"=?{charset}?q?{quopri.encodestring(raw, header=True).decode('ascii', 'replace')}?="


header_value = st.lists(encoded_word() | text.map(lambda t: t.replace("\r", " ").replace("\n", " ")), max_size=4).map(
    " ".join
)


@st.composite
def header_lines(draw: st.DrawFn) -> bytes:
    names = ["From", "To", "Cc", "Reply-To", "Subject", "Date", "Authentication-Results", "X-Junk", "Received"]
    lines = []
    for name in draw(st.lists(st.sampled_from(names), max_size=6)):
        value = draw(header_value)
        if name in ("From", "To", "Cc", "Reply-To") and draw(st.booleans()):
            value = f'"{value}" <{draw(st.sampled_from(["a@b.example", "x@y.example", "", "<>", "a@"]))}>'
        if name == "Authentication-Results":
            value = f"mx.example; spf={draw(st.sampled_from(['pass', 'fail', 'x']))} ({value}) smtp.mailfrom=a"
        encoded = value.encode("utf-8", "surrogateescape" if draw(st.booleans()) else "replace")
        lines.append(name.encode() + b": " + encoded)
    return b"".join(line + b"\r\n" for line in lines)


@st.composite
def body(draw: st.DrawFn, kind: str, encoding: str) -> bytes:
    if kind == "text/html":
        raw = "".join(draw(st.lists(st.sampled_from(MARKUP) | text, max_size=12))).encode("utf-8", "replace")
    elif draw(st.booleans()):
        raw = draw(text).encode("utf-8", "replace")
    else:
        raw = draw(st.binary(max_size=300))
    if encoding == "base64":
        encoded = base64.encodebytes(raw)
        return encoded if draw(st.booleans()) else draw(st.binary(max_size=40)) + encoded[: len(encoded) // 2]
    if encoding == "quoted-printable":
        return quopri.encodestring(raw) + draw(st.sampled_from([b"", b"=", b"=Z", b"=\r\n", b"=4"]))
    return raw


@st.composite
def mime_part(draw: st.DrawFn, depth: int = 0) -> bytes:
    headers = draw(header_lines()) if depth == 0 else b""
    if depth < 4 and draw(st.integers(0, 3)) == 0:
        boundary = draw(st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=0, max_size=20))
        quoted = f'"{boundary}"' if draw(st.booleans()) else boundary
        subtype = draw(st.sampled_from(["mixed", "alternative", "related", "signed", "x-bogus"]))
        children = draw(st.lists(mime_part(depth + 1), max_size=4))
        separator = b"\r\n--" + boundary.encode()
        content = b"".join(separator + b"\r\n" + child for child in children)
        if draw(st.booleans()):
            content += separator + b"--\r\n"  # else: a multipart cut short
        return headers + f"Content-Type: multipart/{subtype}; boundary={quoted}\r\n\r\npreamble".encode() + content
    kind = draw(st.sampled_from(TYPES))
    charset = draw(st.sampled_from(CHARSETS))
    encoding = draw(st.sampled_from(ENCODINGS))
    lines = [f"Content-Type: {kind}; charset={charset}"]
    if encoding:
        lines.append(f"Content-Transfer-Encoding: {encoding}")
    if draw(st.booleans()):
        name = draw(text)
        if draw(st.booleans()):
            lines.append(f'Content-Disposition: attachment; filename="{name}"')
        else:
            lines.append(f"Content-Disposition: attachment; filename*={charset}''{quote(name, errors='surrogatepass')}")
    head = "\r\n".join(lines).encode("utf-8", "surrogateescape" if draw(st.booleans()) else "replace")
    if kind == "message/rfc822" and depth < 4:
        return headers + head + b"\r\n\r\n" + draw(mime_part(depth + 1))
    return headers + head + b"\r\n\r\n" + draw(body(kind, encoding))


@FUZZ
@given(mime_part(), st.lists(st.sampled_from(["R_SPF_ALLOW", "R_DKIM_REJECT", "X"])))
def test_generated_mime(data: bytes, symbols: list[str]) -> None:
    found = check(data, symbols=symbols)
    for listed in found.attachments:
        got = attachment_data(data, len(data), LIMITS, listed.index)
        assert got is not None and got[0] == listed


@FUZZ
@given(mime_part(), st.integers(min_value=0, max_value=200))
def test_generated_mime_cut_short(data: bytes, cut: int) -> None:
    check(data[: max(len(data) - cut, 0)])


@FUZZ
@given(st.lists(st.sampled_from(MARKUP) | text, max_size=40))
def test_generated_html(pieces: list[str]) -> None:
    markup = "".join(pieces).encode("utf-8", "surrogateescape")
    found = check(b"Content-Type: text/html; charset=utf-8\r\n\r\n" + markup)
    assert found.problem is None and found.html is not None


class Nesting(HTMLParser):
    """Checks that markup is balanced: every end tag closes the innermost open element."""

    def __init__(self, max_depth: int) -> None:
        super().__init__(convert_charrefs=True)
        self.max_depth = max_depth
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in {renamed(t) for t in TAGS}, tag
        allowed = ATTRIBUTES.get(tag.removeprefix("sfr-"), set()) | ATTRIBUTES["*"]
        assert {name for name, _ in attrs} <= allowed, (tag, attrs)
        if tag not in VOID:
            self.open.append(tag)
            assert len(self.open) <= self.max_depth

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, (self.open[-3:], tag)
        self.open.pop()

    def handle_comment(self, data: str) -> None:
        raise AssertionError(data)

    def handle_decl(self, decl: str) -> None:
        raise AssertionError(decl)


@FUZZ
@given(st.lists(st.sampled_from(MARKUP) | text, max_size=60), st.integers(min_value=1, max_value=12))
def test_balanced_markup_is_balanced(pieces: list[str], max_depth: int) -> None:
    """What nh3 is given: only its elements, in order, never deeper than the cap (the
    property that keeps html5ever's work linear)."""
    balanced = balance("".join(pieces), TAGS, ATTRIBUTES, DROPPED_WITH_CONTENT, max_depth, Deadline(10))
    checker = Nesting(max_depth)
    checker.feed(balanced)
    checker.close()
    assert checker.open == []
