"""Every Halon request shape we may send, each with the public source that attests it, and the
unattested ones as negative fixtures (facts: shared/halon-api.md).

``is_attested(body, generation)`` matches a body structurally against the attested shapes:
keys and literals exactly, any transaction id, queue id (number or decimal string), metadata
map and 6.x version minor. The simulator's contract tests and the adapter's tests share it.

``REST_ATTESTED``: the 5.x VM's other REST requests (query parameters, no body) and the answer
fields their client reads; ``rest_attested(method, path, query)`` matches one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TXID = "3f1c2b7e-1d4a-4c55-9a0e-0c6f3b1d2e4f"
WEB_LOGUI = "halon/web-logui"
SEED = "halon/sender-fp-release"
DOCS_6X = "docs.halon.io manual pages api and api_examples (6.x halon-api)"


@dataclass(frozen=True)
class Shape:
    """An attested request payload: sent with ``command`` in the envelope of each generation."""

    name: str
    command: str
    payload: dict[str, Any]
    source: str
    generations: tuple[int, ...] = (5, 6)
    simulated: bool = True  # False: attested, but the simulator refuses it as not implemented
    note: str = ""


@dataclass(frozen=True)
class Unattested:
    """A request body no Halon source attests: refused, with ``field`` named in the error."""

    name: str
    body: dict[str, Any]
    field: str
    generations: tuple[int, ...] = (5, 6)
    why: str = ""


def _ids(queue: bool = True) -> dict[str, Any]:
    return {"conditions": {"ids": [{"transaction": TXID, "queue": 1} if queue else {"transaction": TXID}]}}


ATTESTED: tuple[Shape, ...] = (
    Shape("F by transaction", "F", _ids(queue=False), f"{SEED}: cron.php (find the copies of a report)"),
    Shape(
        "F by transaction and queue",
        "F",
        _ids(),
        f"{WEB_LOGUI}: pages/preview.php, pages/download.php, pages/report.php",
    ),
    Shape(
        "G metadata (re-mark the quarantine)",
        "G",
        {**_ids(), "metadata": {"_quarantineid": "2"}},
        f"{SEED}: cron.php (move to the long quarantine; ids are the F answer's id objects)",
        note="6.x: the same G with the HSL's marker key is inferred (docs.halon.io queue_changing: "
        "halonctl queue update --metadata)",
    ),
    Shape(
        "G move to ACTIVE by name",
        "G",
        {**_ids(), "move": {"queue": "ACTIVE"}},
        f"{WEB_LOGUI}: cron/pending.actions.php (retry)",
    ),
    Shape(
        "G move to ACTIVE by enum number",
        "G",
        {**_ids(), "move": {"queue": 0}},
        f"{SEED}: cron.php (release; the comment names 0 ACTIVE)",
    ),
    Shape("G action DELETE", "G", {**_ids(), "action": "DELETE"}, f"{WEB_LOGUI}: cron/pending.actions.php (delete)"),
    Shape("G action BOUNCE", "G", {**_ids(), "action": "BOUNCE"}, f"{WEB_LOGUI}: cron/pending.actions.php (bounce)"),
    Shape(
        "F by sender domain",
        "F",
        {"conditions": {"senders": [{"domain": {"value": "example.org"}}]}},
        DOCS_6X,
        generations=(6,),
        simulated=False,
    ),
    Shape(
        "F by queue", "F", {"conditions": {"queues": [{"queue": "DEFER"}]}}, DOCS_6X, generations=(6,), simulated=False
    ),
)

# The 6.x envelope: ``"version": {"major": 6, "minor": N}`` beside command/program/payload.
VERSION_SOURCE = DOCS_6X


def envelope(command: str, payload: dict[str, Any], generation: int, minor: int = 10) -> dict[str, Any]:
    """The request body for ``payload`` on a node of ``generation``."""
    body: dict[str, Any] = {"command": command, "program": "smtpd", "payload": payload}
    if generation == 6:
        body["version"] = {"major": 6, "minor": minor}
    return body


def _f(payload: dict[str, Any]) -> dict[str, Any]:
    return {"command": "F", "program": "smtpd", "payload": payload}


def _g(**change: Any) -> dict[str, Any]:
    return {"command": "G", "program": "smtpd", "payload": {**_ids(), **change}}


UNATTESTED: tuple[Unattested, ...] = (
    Unattested(
        "F with paging",
        _f({**_ids(False), "paging": {"offset": 0, "limit": 1000}}),
        "payload.paging",
        why="no Halon client pages a list",
    ),
    Unattested("G task/actiontype delete", _g(task={"actiontype": 0}), "payload.task", why="no Halon source"),
    Unattested("G hold flag", _g(hold=True), "payload.hold", why="hold/unhold JSON in G is unknown"),
    Unattested(
        "id with a made-up field",
        _f({"conditions": {"ids": [{"transaction": TXID, "actionid": 1}]}}),
        "payload.conditions.ids[0].actionid",
    ),
    Unattested(
        "metadata condition",
        _f({"conditions": {"metadata": {"qid": "1day"}}}),
        "payload.conditions.metadata",
        why="a metadata condition's JSON is unknown",
    ),
    Unattested(
        "empty condition set",
        _f({"conditions": {}}),
        "payload.conditions.ids",
        why="may match the whole queue",
    ),
    Unattested(
        "empty ids",
        {"command": "G", "program": "smtpd", "payload": {"conditions": {"ids": []}, "action": "DELETE"}},
        "payload.conditions.ids",
        why="may match the whole queue",
    ),
    Unattested("two changes in one G", _g(metadata={"qid": "7days"}, action="DELETE"), "payload", why="one per G"),
    Unattested("move to HOLD", _g(move={"queue": "HOLD"}), "payload.move.queue", why="only ACTIVE is attested"),
    Unattested("action by number", _g(action=0), "payload.action", why="only the names are attested"),
    Unattested("metadata value not a string", _g(metadata={"_quarantineid": 2}), "payload.metadata._quarantineid"),
    Unattested("other program", {**_g(action="DELETE"), "program": "other"}, "program"),
    Unattested(
        "version sent to 5.x",
        {**_g(action="DELETE"), "version": {"major": 6, "minor": 10}},
        "version",
        generations=(5,),
        why="the 5.x API has no version envelope",
    ),
    Unattested("no version on 6.x", _g(action="DELETE"), "version", generations=(6,), why="6.x requires it"),
    Unattested("version 5 on 6.x", {**_g(action="DELETE"), "version": {"major": 5, "minor": 3}}, "version.major", (6,)),
    Unattested(
        "version minor not an integer",
        {**_g(action="DELETE"), "version": {"major": 6, "minor": "ten"}},
        "version.minor",
        (6,),
    ),
    Unattested(
        "unknown envelope field",
        {**_g(action="DELETE"), "version": {"major": 6, "minor": 10}, "options": {}},
        "options",
        (6,),
    ),
)


# -- structural matching ---------------------------------------------------------------------


def _int64(value: Any) -> bool:
    if isinstance(value, str):
        return value.isascii() and value.isdigit() and int(value) > 0
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(_text(k) and isinstance(v, str) for k, v in value.items())


def _minor(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# Paths (list items as []) whose value may be anything of the right kind.
_WILDCARDS: dict[str, Callable[[Any], bool]] = {
    "payload.conditions.ids[].transaction": _text,
    "payload.conditions.ids[].queue": _int64,
    "payload.metadata": _string_map,
    "version.minor": _minor,
}


def _match(example: Any, actual: Any, path: str) -> bool:
    if path in _WILDCARDS:
        return _WILDCARDS[path](actual)
    if isinstance(example, dict):
        return (
            isinstance(actual, dict)
            and actual.keys() == example.keys()
            and all(_match(example[key], actual[key], f"{path}.{key}" if path else key) for key in example)
        )
    if isinstance(example, list):
        return isinstance(actual, list) and bool(actual) and all(_match(example[0], a, path + "[]") for a in actual)
    return type(example) is type(actual) and example == actual


def attested_shape(body: Any, generation: int) -> Shape | None:
    """The attested shape ``body`` is an instance of on a node of ``generation``, or None."""
    for shape in ATTESTED:
        if generation in shape.generations and _match(envelope(shape.command, shape.payload, generation), body, ""):
            return shape
    return None


def is_attested(body: Any, generation: int) -> bool:
    """True if ``body`` is, structurally, a request Halon's own material shows for ``generation``."""
    return attested_shape(body, generation) is not None


# -- the 5.x VM's REST paths (query parameters only) -------------------------------------------


@dataclass(frozen=True)
class RestShape:
    """An attested 5.x REST request: its method, path and query parameter names (no body), and
    the answer fields its client reads."""

    name: str
    method: str
    path: str
    query: tuple[str, ...]
    answer: tuple[str, ...]
    source: str
    generations: tuple[int, ...] = (5,)
    note: str = ""


REST_ATTESTED: tuple[RestShape, ...] = (
    RestShape(
        "read a file",
        "GET",
        "/api/5.3.0/system/files",
        ("path", "offset", "limit"),
        ("data", "size", "offset"),
        f"{WEB_LOGUI}: inc/eml.php (eml_download, readUntil), called from pages/preview.php",
        note="path: the .eml beside the F item's hqfpath ('hqf' replaced by 'eml'); data: base64; size: bytes "
        "in this answer, below limit at the end of the file; offset: where the next read starts",
    ),
    RestShape(
        "a file's size",
        "POST",
        "/api/5.3.0/system/files:size",
        ("path",),
        ("size",),
        f"{WEB_LOGUI}: inc/eml.php (a download's Content-Length)",
        note="sent by classes/ARestClient.class.php with the path in the query and no body",
    ),
    RestShape("license", "GET", "/api/5.3.0/license", (), ("serial",), f"{WEB_LOGUI}: classes/Node.class.php"),
)

# File reads no Halon client sends (a parameter it never sends, leaves out, or a value it
# never asks for): refused by the simulator naming the parameter.
REST_UNATTESTED: tuple[tuple[str, dict[str, str], str], ...] = (
    ("unknown parameter", {"path": "P", "offset": "0", "limit": "10", "length": "10"}, "length"),
    ("no limit", {"path": "P", "offset": "0"}, "limit"),
    ("no offset", {"path": "P", "limit": "10"}, "offset"),
    ("negative offset", {"path": "P", "offset": "-1", "limit": "10"}, "offset"),
    ("limit zero", {"path": "P", "offset": "0", "limit": "0"}, "limit"),
    ("limit not a number", {"path": "P", "offset": "0", "limit": "ten"}, "limit"),
)


def rest_attested(method: str, path: str, query: Any) -> RestShape | None:
    """The attested REST shape a request is an instance of (any values), or None."""
    for shape in REST_ATTESTED:
        if (method, path) == (shape.method, shape.path) and sorted(query) == sorted(shape.query):
            return shape
    return None
