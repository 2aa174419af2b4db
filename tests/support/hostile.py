"""The hostile corpus the guard feeds into every slot of every request, and how each value
travels: as text in a URL or a form (percent-encoded UTF-8, or raw bytes where the value is
not UTF-8 at all), in a header (its bytes, as WSGI hands them over), in a raw body and as a
JSON value.

The fixed corpus holds one value per class of trouble found so far; Hypothesis adds random
text from every Unicode category (controls, format characters, surrogates included).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_from_bytes

from hypothesis import strategies as st


@dataclass(frozen=True)
class Hostile:
    """One hostile value: ``wire`` is what goes into a URL or a form (bytes, so that invalid
    UTF-8 can be sent), ``json`` what goes into a JSON body; ``append`` values are added to the
    slot's valid value, so that a check on the valid prefix (``next=/admin…``, a token, an id)
    passes and the hostile rest reaches what comes after it."""

    name: str
    wire: bytes
    json: Any
    append: bool = False


def _text(name: str, text: str, *, append: bool = False, json: Any = None) -> Hostile:
    return Hostile(name, text.encode("utf-8", "surrogatepass"), text if json is None else json, append)


REPLACED = (
    _text("huge integer", "1" + "0" * 30, json=10**30),
    _text("2**31", str(2**31), json=2**31),
    _text("2**63", str(2**63), json=2**63),
    _text("negative", "-1", json=-1),
    _text("huge negative", str(-(2**63) - 1), json=-(2**63) - 1),
    _text("not a number", "1e3x", json="1e3x"),
    _text("non-ASCII digits", "\u0663\u0664", json="\u0663\u0664"),
    _text("empty", "", json=""),
    _text("long", "A" * 4000),
)
APPENDED = (
    _text("NUL", "\x00", append=True),
    _text("CR/LF", "\r\nX-Injected: 1", append=True),
    _text("C0/C1 controls", "\x01\x08\x1b\x7f\x85\x9b", append=True),
    _text("bidi/format", "\u202egnp.exe\u2066\u200b\ufeff", append=True),
    Hostile("invalid UTF-8", b"\xff\xfe\xc0\xaf", "\udcff\udcfe", append=True),
    Hostile("lone surrogate", b"\xed\xa0\x80", "\ud800", append=True),
)
#: Every slot gets each of these.
CORPUS = APPENDED + REPLACED
#: JSON-only values: every type where a field expects another.
JSON_TYPES = (None, True, 1.5, float("inf"), [], {}, [1], {"a": 1}, "1")
#: The names url_for reserves, and others a template might pass on.
RESERVED = {"_external": "1", "_anchor": "x\x00y", "_method": "DELETE", "_scheme": "javascript",
            "endpoint": "admin.index", "next": "//evil.example/"}  # fmt: skip
MAX_BODY = 64 * 1024  # the app's MAX_CONTENT_LENGTH
#: Texts for a slot that holds serialized JSON (a header): nesting deeper than Python's parser
#: recurses (and short enough for the 8 KiB a server takes in a header line), what that parser
#: accepts beyond JSON, numbers it refuses to convert, and every type where a list goes.
JSON_TEXTS = (
    ("deep nesting", b"[" * 3000),
    ("deep nesting, closed", b"[" * 1500 + b"]" * 1500),
    ("deep objects", b'{"a":' * 1200 + b"1" + b"}" * 1200),
    ("NaN and Infinity", b"[NaN, Infinity, -Infinity, 1e999]"),
    ("5000 digits", b"[" + b"9" * 5000 + b"]"),
    ("escaped lone surrogate", b'["\\ud800", {"name": "\\udfff"}]'),
    *((f"{value!r}", json.dumps(value).encode()) for value in JSON_TYPES),
    *((f"[{value!r}]", json.dumps([value]).encode()) for value in JSON_TYPES),
)


def apply(hostile: Hostile, valid: str | bytes) -> bytes:
    """The wire bytes of ``hostile`` in a slot whose valid value is ``valid``."""
    prefix = valid if isinstance(valid, bytes) else valid.encode("utf-8", "surrogatepass")
    return (prefix + hostile.wire) if hostile.append else hostile.wire


def header_value(raw: str | bytes) -> str:
    """``raw`` as a request header's value, as WSGI hands it to the app: its bytes as Latin-1.

    CR and LF cannot travel inside a value: on the wire a line break ends the field (a server
    reads what follows as another header, or refuses the request), and werkzeug's test client
    raises before the app sees it, a refusal on the client's side that is not a finding. They
    are encoded as a server delivers an obsolete line folding (RFC 9112 5.2): each one a space,
    so the rest of the hostile value still reaches the app. NUL and the other controls go as
    they are (the test client passes them; gunicorn refuses NUL, but the app must not rely on
    its server for that).
    """
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    return data.replace(b"\r", b" ").replace(b"\n", b" ").decode("latin-1")


def encode(pairs: list[tuple[str, str | bytes]]) -> str:
    """``pairs`` as a query string or form body; bytes are sent as they are (percent-encoded)."""
    out = []
    for name, value in pairs:
        raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
        out.append(
            f"{quote_from_bytes(name.encode('utf-8', 'surrogatepass'), safe='')}={quote_from_bytes(raw, safe='')}"
        )
    return "&".join(out)


def path_segment(value: str | bytes) -> str:
    """One path segment, percent-encoded (a "/" in it stays inside the segment)."""
    raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
    return quote_from_bytes(raw, safe="")


#: Random text from every category, surrogates and controls included.
any_text = st.text(st.characters(codec=None, categories=None), max_size=40)
numberish = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.from_regex(r"\A[-+]?[0-9]{1,25}([.eE][-+]?[0-9]{0,4})?\Z"),
)
wire_values = st.one_of(
    st.sampled_from(CORPUS),
    any_text.map(lambda t: _text("random text", t, append=False)),
    any_text.map(lambda t: _text("random text (appended)", t, append=True)),
    numberish.map(lambda t: _text("random number", t)),
    st.binary(max_size=12).map(lambda b: Hostile("random bytes", b, b.decode("latin-1"), append=True)),
)
json_values = st.one_of(
    st.sampled_from([h.json for h in CORPUS] + list(JSON_TYPES)),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    any_text,
)
