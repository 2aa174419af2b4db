"""What the guard sends: a probe (one request, before encoding) and the ways to derive hostile
probes from a valid one, slot by slot (the corpus), and as a whole (reserved and duplicated
names, missing and repeated headers, oversized bodies, wrong content types, broken headers)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from tests.support.hostile import (
    CORPUS,
    JSON_TEXTS,
    JSON_TYPES,
    MAX_BODY,
    RESERVED,
    Hostile,
    apply,
    encode,
    header_value,
)
from tests.support.surface import BODY_METHODS, Endpoint

NO_BODY = object()
Value = str | bytes
Slot = tuple[str, str, Any]  # (where: path, query, form, json, header or body; name; the valid value)


@dataclass
class Probe:
    """One request: path values, query pairs, a form or JSON body (or raw bytes), headers."""

    note: str
    args: dict[str, Value]
    query: list[tuple[str, Value]]
    form: list[tuple[str, Value]] | None = None
    json: Any = NO_BODY
    body: bytes | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def with_value(self, where: str, name: str, value: Any, note: str) -> Probe:
        """This probe with one slot set to ``value``."""
        if where == "path":
            return replace(self, note=note, args={**self.args, name: value})
        if where == "json":
            return replace(self, note=note, json={**self.json, name: value})
        if where == "header":
            return replace(self, note=note, headers={**self.headers, name: header_value(value)})
        if where == "body":
            return replace(self, note=note, body=value if isinstance(value, bytes) else value.encode())
        pairs = self.query if where == "query" else (self.form or [])
        if any(n == name for n, _ in pairs):
            new = [(n, value if n == name else v) for n, v in pairs]
        else:
            new = [*pairs, (name, value)]
        return replace(self, note=note, **{"query" if where == "query" else "form": new})


def slots(endpoint: Endpoint, base: Probe) -> list[Slot]:
    """(where, name, valid value) for every input of this request."""
    found: list[Slot] = [("path", k, v) for k, v in base.args.items()]
    query = dict(base.query)
    found += [("query", name, query.get(name, "")) for name in sorted(endpoint.query)]
    if base.form is not None:
        form = dict(base.form)
        found += [("form", name, form.get(name, "")) for name in endpoint.form]
    if isinstance(base.json, dict):
        found += [("json", name, value) for name, value in base.json.items()]
    found += [("header", name, base.headers.get(name, "")) for name in endpoint.headers]
    if endpoint.raw is not None and base.body is not None:
        found.append(("body", endpoint.raw[0], base.body))
    return found


def systematic(fresh: Callable[[], Probe], slots: list[Slot], json_headers: set[str] | None = None) -> Iterator[Probe]:
    """Every corpus value in every slot given; a raw body also gets the appended values at the
    end of its first line (a message's first header), a header holding JSON the JSON texts."""
    for where, name, valid in slots:
        for hostile in CORPUS:
            value = json_value(hostile, valid) if where == "json" else apply(hostile, valid)
            yield fresh().with_value(where, name, value, f"{where} {name!r}: {hostile.name}")
            if where == "body" and hostile.append and b"\n" in valid:
                line, rest = valid.split(b"\n", 1)
                cr = b"\r" if line.endswith(b"\r") else b""
                inside = line.removesuffix(cr) + hostile.wire + cr + b"\n" + rest
                yield fresh().with_value(where, name, inside, f"body first line: {hostile.name}")
        if where == "json":
            for other in JSON_TYPES:
                yield fresh().with_value(where, name, other, f"json {name!r}: {other!r}")
        if where == "header" and name in (json_headers or set()):
            for text_name, text in JSON_TEXTS:
                yield fresh().with_value(where, name, text, f"header {name!r}: JSON {text_name}")


def structural(method: str, fresh: Callable[[], Probe], slots: list[Slot]) -> Iterator[Probe]:
    """Reserved and duplicated names, oversized bodies, wrong content types, broken headers."""
    for name, value in RESERVED.items():
        base = fresh()
        yield replace(base, note=f"reserved query {name}={value!r}", query=[*base.query, (name, value)])
    base = fresh()
    yield replace(base, note="reserved query, all", query=[*base.query, *RESERVED.items()])
    if base.form is not None:
        base = fresh()
        yield replace(base, note="reserved form names", form=[*base.form, *RESERVED.items()])
    nul = CORPUS[0]
    pairs = [(w, name, v) for w, name, v in slots if w in ("query", "form")]
    for order in ("valid first", "hostile first"):
        base = fresh()
        query, form = list(base.query), list(base.form or [])
        for where, name, valid in pairs:
            twice = [(name, valid), (name, apply(nul, str(valid)))]
            (query if where == "query" else form).extend(twice if order == "valid first" else twice[::-1])
        yield replace(base, note=f"duplicated parameters ({order})", query=query,
                      form=form if base.form is not None else None)  # fmt: skip
    headers = [name for where, name, _ in slots if where == "header"]
    for name in headers:
        base = fresh()
        kept = {k: v for k, v in base.headers.items() if k != name}
        yield replace(base, note=f"header {name!r} missing", headers=kept)
    if headers:
        base = fresh()
        both = {k: f"{v}, {v}" if k in headers else v for k, v in base.headers.items()}
        yield replace(base, note="headers repeated (joined, as a server joins them)", headers=both)
        base = fresh()
        yield replace(base, note="headers all missing", headers={k: v for k, v in base.headers.items()
                                                                  if k not in headers})  # fmt: skip
    base = fresh()
    padding = [*(base.form or []), ("padding", "A" * (MAX_BODY + 1))]
    yield replace(base, note="oversized form body", form=padding, json=NO_BODY, body=None)
    base = fresh()
    raw = b"A" * (MAX_BODY + 1)
    yield replace(base, note="oversized raw body", body=raw, content_type="application/octet-stream")
    base = fresh()
    headers = {**base.headers, "Accept": "application/json", "X-Request-ID": "\u00ff" * 300,
               "Accept-Language": "\u00ff;q=x, *;q=-1, en;q=99999999999999999999"}  # fmt: skip
    yield replace(base, note="odd headers", headers=headers)
    for auth in ("Bearer " + "A" * 5000 + "\u00ff", "Basic %%% a b"):
        base = fresh()
        yield replace(base, note=f"Authorization {auth[:20]!r}", headers={**base.headers, "Authorization": auth})
    if method not in BODY_METHODS:
        return
    raw = [(where, name, valid) for where, name, valid in slots if where == "body"]
    for _, media_type, valid in raw:
        base = fresh()
        big = valid + b"A" * (MAX_BODY + 1 - len(valid))
        yield replace(base, note=f"oversized {media_type} body", body=big, content_type=media_type)
        for other in (None, "", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                      "application/json", "application/merge-patch+json", "application/octet-stream",
                      f"{media_type}; charset=utf-16", f"{media_type}; charset=\u00ff; boundary=\"",
                      "*/*", "text/html"):  # fmt: skip
            yield replace(fresh(), note=f"{media_type} body as {other!r}", content_type=other)
    base = fresh()
    form = encode(list(base.form or [])).encode()
    as_json = json.dumps(dict(base.form or [])).encode() if base.json is NO_BODY else json.dumps(base.json).encode()
    for content_type, body in (("application/json", as_json), ("text/plain", form),
                               ("multipart/form-data", form), ("multipart/form-data; boundary=x", b"--x\r\n\r\n"),
                               ("application/x-www-form-urlencoded; charset=utf-16", form),
                               ("application/x-www-form-urlencoded", b"%zz=%\xff\xfe&=&&a"),
                               ("application/json", b'{"a": "\xff\xfe"}'), ("application/json", b"[" * 60_000),
                               ("application/json", b'{"a": "\\ud800"}'), ("application/json", b"[1, 2]"),
                               ("application/json; charset=latin-1", as_json)):  # fmt: skip
        yield replace(fresh(), note=f"body {content_type} {body[:20]!r}", body=body, content_type=content_type)


def typed(kind: str, value: str) -> str:
    """What a person types into an empty field of this kind (a widget fills its own)."""
    if value or "-" in kind or kind in ("hidden", "checkbox", "radio", "button", "submit"):
        return value
    return "1" if kind == "number" else "guard"


def json_value(hostile: Hostile, valid: Any) -> Any:
    """``hostile`` in a JSON field whose valid value is ``valid``."""
    if hostile.append and isinstance(valid, str) and isinstance(hostile.json, str):
        return valid + hostile.json
    return hostile.json
