"""A Halon API simulator: a real HTTP server over an in-memory, thread-safe queue.

Demo mode, the tests and the benchmarks talk to it through the real :class:`HalonGateway`,
so they exercise the same HTTP, auth and JSON code paths as production. It implements the
calls the adapter uses (see shared/halon-api.md), rejects what the real API would reject,
and can inject latency, failures and timeouts.

Lifecycle of a copy (``SimItem.state``):

- ``hold``: in the hold queue; quarantined when ``metadata._quarantineid`` is set.
- ``active``: released (``move queue 0``) and waiting for delivery; still listed, ``hold`` false.
- ``delivered``: Halon delivered it and it left the queue. By default a release delivers at
  once (``auto_deliver=True``), as a real node does within moments; with ``auto_deliver=False``
  copies stay ``active`` until :meth:`HalonSimulator.deliver_active`.
- ``deleted``: deleted through the API.  ``expired``: removed by Halon's own retention
  cleanup (:meth:`HalonSimulator.remove`).

Only ``hold`` and ``active`` copies are still in the queue: the list command returns only
those and updates match only those, so an update of a gone copy answers ``affected: 0``.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from markupsafe import escape
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from release.config import NodeSettings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

State = Literal["hold", "active", "delivered", "deleted", "expired"]
IN_QUEUE: tuple[State, ...] = ("hold", "active")
PROTOBUF_PATH = "/api/protobuf"
LICENSE_PATH = "/api/5.3.0/license"
DEFAULT_USERNAME = "release-api"
DEFAULT_PASSWORD = "simulator-password"  # noqa: S105 - the simulator's own local account
DEFAULT_PAGE_LIMIT = 100
MAX_PAGE_LIMIT = 1000
QUARANTINE_PREFIX = "mailquarantine:"


class ApiError(Exception):
    """An error answer: HTTP ``status`` with ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class SimItem:
    """One recipient's copy in the simulated queue."""

    transaction: str
    queue: int
    sender: str
    recipient: str
    subject: str
    ts: float
    size: int
    senderip: str
    metadata: dict[str, str]
    state: State = "hold"

    @property
    def hold(self) -> bool:
        """True while the copy sits in the hold queue (Halon's ``hold`` flag)."""
        return self.state == "hold"

    @property
    def quarantine(self) -> str | None:
        """``mailquarantine:N`` while held in a quarantine, else None."""
        number = self.metadata.get("_quarantineid")
        return QUARANTINE_PREFIX + number if self.hold and number else None

    def snapshot(self) -> SimItem:
        """A detached copy, so callers cannot change the store behind its lock."""
        return dataclasses.replace(self, metadata=dict(self.metadata))

    def to_json(self) -> dict[str, Any]:
        """The queue item as the API returns it."""
        return {
            "id": {"transaction": self.transaction, "queue": self.queue},
            "ts": self.ts,
            "sender": _split_address(self.sender),
            "recipient": _split_address(self.recipient),
            "subject": self.subject,
            "size": self.size,
            "senderip": self.senderip,
            "saslusername": "",
            "hold": self.hold,
            "metadata": dict(self.metadata),
        }


@dataclass
class RecordedRequest:
    """What one HTTP request carried, for assertions (``status`` is set once answered)."""

    method: str
    path: str
    headers: dict[str, str]
    username: str | None
    authorized: bool
    body: Any = None  # decoded JSON, or None when absent or malformed
    status: int = 0

    @property
    def command(self) -> str | None:
        """The protobuf command letter, if the body had one."""
        return self.body.get("command") if isinstance(self.body, dict) else None


@dataclass
class _Fault:
    status: int | None  # None: answer normally after the delay
    body: Any = None
    delay: float = 0.0


@dataclass
class _Ids:
    pairs: list[tuple[str, int | None]] = field(default_factory=list)

    def match(self, item: SimItem) -> bool:
        return any(t == item.transaction and q in (None, item.queue) for t, q in self.pairs)


class HalonSimulator:
    """In-memory Halon node: queue store, users, fault injection and a request log."""

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        *,
        auto_deliver: bool = True,
        max_page_size: int = MAX_PAGE_LIMIT,
    ) -> None:
        self.users = dict(users) if users is not None else {DEFAULT_USERNAME: DEFAULT_PASSWORD}
        self.auto_deliver = auto_deliver
        self.max_page_size = max_page_size
        self.requests_log: list[RecordedRequest] = []
        self._items: list[SimItem] = []
        self._faults: list[_Fault] = []
        self._latency = 0.0
        self._lock = threading.RLock()
        self._closing = threading.Event()

    # -- store --------------------------------------------------------------------------------

    def add_message(
        self,
        sender: str,
        recipients: list[str],
        subject: str,
        quarantine: str | None = "mailquarantine:1",
        ts: float | None = None,
        score: float | None = None,
        transaction: str | None = None,
        metadata: Mapping[str, str] | None = None,
        *,
        sender_ip: str = "192.0.2.10",
        size: int | None = None,
    ) -> str:
        """Queue a message, one copy per recipient (queue ids 1..n); returns the transaction id.

        With a quarantine the copies are held in it; with ``quarantine=None`` they are active.
        """
        if not recipients:
            raise ValueError("a message needs at least one recipient")
        meta = dict(metadata or {})
        if quarantine is not None:
            number = quarantine.removeprefix(QUARANTINE_PREFIX)
            if not number.isdigit():
                raise ValueError(f"not a quarantine id: {quarantine!r}")
            meta["_quarantineid"] = number
        if score is not None:
            meta["_scores.rpd.score"] = str(score)
        transaction = transaction or str(uuid.uuid4())
        when = time.time() if ts is None else ts
        with self._lock:
            for queue, recipient in enumerate(recipients, start=1):
                self._items.append(
                    SimItem(
                        transaction=transaction,
                        queue=queue,
                        sender=sender,
                        recipient=recipient,
                        subject=subject,
                        ts=when,
                        size=size if size is not None else 2048 + len(subject),
                        senderip=sender_ip,
                        metadata=dict(meta),
                        state="hold" if quarantine is not None else "active",
                    )
                )
        return transaction

    def copies(self, transaction: str) -> list[SimItem]:
        """Every copy of a transaction in any state (snapshots), ordered by queue id."""
        with self._lock:
            found = [i.snapshot() for i in self._items if i.transaction == transaction]
        return sorted(found, key=lambda i: i.queue)

    def items(self, state: State | None = None) -> list[SimItem]:
        """All copies (snapshots), optionally only those in one state."""
        with self._lock:
            return [i.snapshot() for i in self._items if state is None or i.state == state]

    def active(self) -> list[SimItem]:
        """Released copies still waiting for delivery (only with ``auto_deliver=False``)."""
        return self.items("active")

    def delivered(self) -> list[SimItem]:
        """Released copies that have been delivered and left the queue."""
        return self.items("delivered")

    def deliver_active(self) -> int:
        """Deliver every active copy (take it out of the queue); returns how many."""
        with self._lock:
            pending = [i for i in self._items if i.state == "active"]
            for item in pending:
                item.state = "delivered"
        return len(pending)

    def remove(self, transaction: str, queue: int | None = None) -> int:
        """Simulate Halon's own retention cleanup: the copies vanish from the queue."""
        with self._lock:
            gone = [
                i
                for i in self._items
                if i.transaction == transaction and queue in (None, i.queue) and i.state in IN_QUEUE
            ]
            for item in gone:
                item.state = "expired"
        return len(gone)

    # -- fault injection ----------------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        """Answer the next ``n`` API requests with ``status`` and a JSON error body."""
        self.respond_next(status, {"error": f"simulated failure (HTTP {status})"}, n)

    def respond_next(self, status: int, body: Any, n: int = 1) -> None:
        """Answer the next ``n`` API requests with this status and body (str: sent verbatim)."""
        with self._lock:
            self._faults.extend(_Fault(status, body) for _ in range(n))

    def timeout_next(self, n: int = 1, seconds: float = 30.0) -> None:
        """Stall the next ``n`` API requests for ``seconds`` (past any client timeout).

        The request is still carried out afterwards, as on a real slow node: a client
        timeout does not prove the update did not happen.
        """
        with self._lock:
            self._faults.extend(_Fault(None, delay=seconds) for _ in range(n))

    def set_latency(self, seconds: float) -> None:
        """Delay every API request by ``seconds`` (0 turns it off)."""
        self._latency = max(0.0, seconds)

    def close(self) -> None:
        """Cut short any injected sleeps (the server calls this when it stops)."""
        self._closing.set()

    def reopen(self) -> None:
        """Allow injected sleeps again (after :meth:`close`, when a server restarts)."""
        self._closing.clear()

    def api_calls(self, command: str | None = None) -> list[dict[str, Any]]:
        """JSON bodies of the protobuf requests received, optionally of one command."""
        with self._lock:
            records = list(self.requests_log)
        return [
            r.body
            for r in records
            if r.path == PROTOBUF_PATH and isinstance(r.body, dict) and command in (None, r.command)
        ]

    # -- HTTP ---------------------------------------------------------------------------------

    def app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI application."""
        response = self._dispatch(Request(environ))
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        if request.path == "/" and request.method in ("GET", "HEAD"):
            return self._overview()
        routes = {PROTOBUF_PATH: "POST", LICENSE_PATH: "GET"}
        if request.path not in routes:
            return Response("not found\n", status=404, mimetype="text/plain")
        record = self._record(request)
        try:
            response = self._api(request, record, routes[request.path])
        except ApiError as exc:
            response = _json({"error": exc.message}, exc.status)
            if exc.status == 401:
                response.headers["WWW-Authenticate"] = 'Basic realm="Halon simulator"'
        record.status = response.status_code
        return response

    def _record(self, request: Request) -> RecordedRequest:
        auth = request.authorization
        username = auth.username if auth and auth.type == "basic" else None
        password = auth.password if auth and auth.type == "basic" else None
        expected = self.users.get(username or "")
        authorized = (
            expected is not None
            and password is not None
            and hmac.compare_digest(expected.encode("utf-8"), password.encode("utf-8"))
        )
        record = RecordedRequest(request.method, request.path, dict(request.headers), username, authorized)
        with self._lock:
            self.requests_log.append(record)
        return record

    def _api(self, request: Request, record: RecordedRequest, method: str) -> Response:
        self._sleep(self._latency)
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None:
            self._sleep(fault.delay)
            if fault.status is not None:
                if isinstance(fault.body, str):
                    return Response(fault.body, status=fault.status, mimetype="text/plain")
                return _json(fault.body, fault.status)
        if not record.authorized:
            raise ApiError(401, "authentication required")
        if request.method != method:
            raise ApiError(405, f"use {method}")
        if request.path == LICENSE_PATH:
            return _json({"license": {"product": "Halon simulator", "status": "valid"}})
        if request.mimetype != "application/json":
            raise ApiError(415, "Content-Type must be application/json")
        try:
            record.body = json.loads(request.get_data())
        except ValueError:
            raise ApiError(400, "malformed JSON") from None
        return _json(self._protobuf(record.body))

    def _protobuf(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "the request must be a JSON object")
        if body.get("program") != "smtpd":
            raise ApiError(400, f"unknown program {body.get('program')!r}")
        payload = body.get("payload")
        if not isinstance(payload, dict):
            raise ApiError(400, "payload must be an object")
        command = body.get("command")
        if command == "F":
            return self._list(_parse_ids(payload), payload.get("paging"))
        if command == "G":
            return self._update(_parse_ids(payload), payload)
        raise ApiError(400, f"unknown command {command!r}")

    def _list(self, ids: _Ids, paging: Any) -> dict[str, Any]:
        paging = paging if isinstance(paging, dict) else {}
        offset = _nonnegative(paging.get("offset", 0), "paging.offset")
        limit = _nonnegative(paging.get("limit", DEFAULT_PAGE_LIMIT), "paging.limit") or DEFAULT_PAGE_LIMIT
        limit = min(limit, self.max_page_size, MAX_PAGE_LIMIT)
        with self._lock:
            matches = [i for i in self._items if i.state in IN_QUEUE and ids.match(i)]
            page = [i.to_json() for i in matches[offset : offset + limit]]
        return {"items": page, "paging": {"total": len(matches)}}

    def _update(self, ids: _Ids, payload: dict[str, Any]) -> dict[str, Any]:
        metadata, release, delete = _parse_changes(payload)
        with self._lock:
            matches = [i for i in self._items if i.state in IN_QUEUE and ids.match(i)]
            for item in matches:
                item.metadata.update(metadata)
                if release:
                    item.state = "delivered" if self.auto_deliver else "active"
                if delete:
                    item.state = "deleted"
        return {"affected": len(matches), "working": 0}

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._closing.wait(seconds)

    def _overview(self) -> Response:
        """A plain page listing every copy and its state, for people trying the demo."""
        rows = []
        for item in self.items():
            state = item.quarantine or ("held" if item.hold else item.state)
            cells = (
                item.transaction,
                str(item.queue),
                item.sender,
                item.recipient,
                item.subject,
                datetime.fromtimestamp(item.ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
                state,
            )
            rows.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
        heads = ("transaction", "queue", "sender", "recipient", "subject", "received", "state")
        html = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Halon simulator</title>'
            "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}</style></head>"
            f"<body><h1>Halon simulator</h1><p>{len(rows)} copies</p><table><tr>"
            + "".join(f"<th>{h}</th>" for h in heads)
            + "</tr>"
            + "".join(rows)
            + "</table></body></html>"
        )
        response = Response(html, mimetype="text/html")
        response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
        return response


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _parse_ids(payload: dict[str, Any]) -> _Ids:
    """``conditions.ids``, required and non-empty so no request can match the whole queue."""
    conditions = payload.get("conditions")
    raw = conditions.get("ids") if isinstance(conditions, dict) else None
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "conditions.ids must be a non-empty list")
    ids = _Ids()
    for entry in raw:
        transaction = entry.get("transaction") if isinstance(entry, dict) else None
        if not isinstance(transaction, str) or not transaction:
            raise ApiError(400, "every id needs a transaction")
        queue = entry.get("queue")
        if queue is not None:
            queue = _nonnegative(queue, "id.queue")
        ids.pairs.append((transaction, queue))
    return ids


def _parse_changes(payload: dict[str, Any]) -> tuple[dict[str, str], bool, bool]:
    """(metadata to merge, release?, delete?) from an update; 400 for anything unsupported."""
    metadata = payload.get("metadata", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ApiError(400, "metadata must map strings to strings")
    release = False
    if "move" in payload:
        move = payload["move"]
        if not isinstance(move, dict) or move.get("queue") not in (0, "ACTIVE"):
            raise ApiError(400, "unsupported move (only queue 0 / ACTIVE)")
        release = True
    delete = False
    if "action" in payload:
        if payload["action"] != "DELETE":
            raise ApiError(400, f"unsupported action {payload['action']!r}")
        delete = True
    if "task" in payload:
        task = payload["task"]
        if not isinstance(task, dict) or task.get("actiontype") not in (0, "DELETE"):
            raise ApiError(400, "unsupported task (only actiontype 0 / DELETE)")
        delete = True
    if not (metadata or release or delete):
        raise ApiError(400, "nothing to update")
    if release and delete:
        raise ApiError(400, "move and delete in one request")
    return metadata, release, delete


def _nonnegative(value: Any, name: str) -> int:
    """A non-negative integer (proto3 JSON may send 64-bit numbers as strings)."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ApiError(400, f"{name} must be a non-negative integer")


def _split_address(address: str) -> dict[str, str]:
    localpart, _, domain = address.rpartition("@")
    return {"localpart": localpart, "domain": domain} if localpart else {"localpart": address, "domain": ""}


class _QuietHandler(WSGIRequestHandler):
    """Keeps per-request access lines out of test and demo output; errors still print."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class SimulatorServer:
    """Serves a :class:`HalonSimulator` on 127.0.0.1 in a daemon thread (port 0: any free one)."""

    def __init__(self, sim: HalonSimulator | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim or HalonSimulator()
        self.host = host
        self.port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the running server (the node's ``api_url``)."""
        if self._server is None:
            raise RuntimeError("the simulator server is not running")
        return f"http://{self.host}:{self._server.server_port}"

    def start(self) -> SimulatorServer:
        """Bind and serve in the background; returns self."""
        if self._server is None:
            self.sim.reopen()
            self._server = make_server(self.host, self.port, self.sim.app, threaded=True, request_handler=_QuietHandler)
            # A short poll interval keeps stop() fast (tests start one server each).
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name="halon-simulator", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self._server is None:
            return
        self.sim.close()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def node_settings(self, name: str = "sim", **overrides: Any) -> NodeSettings:
        """Settings for a node pointing at this server with the simulator's first user."""
        username, password = next(iter(self.sim.users.items()), ("", ""))
        values: dict[str, Any] = {"username": username, "password": password, **overrides}
        return NodeSettings(name=name, api_url=self.url, **values)

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def seed_demo(sim: HalonSimulator) -> list[str]:
    """Add a few plausible rejected messages for demo mode; returns their transaction ids."""
    now = time.time()
    return [
        sim.add_message(
            "invoices@supplier.example",
            ["accounts@example.com"],
            "Invoice 2024-117 for March deliveries",
            ts=now - 3 * 3600,
            score=100.0,
            sender_ip="198.51.100.23",
        ),
        sim.add_message(
            "anna.berg@partner.example",
            ["alice@example.com", "bob@example.com"],
            "Meeting notes and next steps",
            ts=now - 40 * 60,
            score=90.0,
            sender_ip="203.0.113.7",
        ),
        sim.add_message(
            "newsletter@club.example",
            ["carol@example.com"],
            "Your weekly club update",
            ts=now - 10 * 60,
            score=100.0,
            sender_ip="192.0.2.44",
        ),
    ]
