"""A misbehaving or hostile Halon node (raw HTTP, not the simulator): trickled, huge, deeply
nested or wrong-typed answers, 200s carrying errors, 64-bit queue ids. Each gives a clear
gateway error or the right reading, never a hung worker or a wrong state."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from release.config import NodeSettings
from release.gateway import GatewayError, HalonGateway

API_KEY = "Hostile-Test-Api-Key-0123456789"
Answer = Callable[[BaseHTTPRequestHandler, dict[str, Any]], None]


class Hostile:
    def __init__(self) -> None:
        self.answer: Answer = lambda h, body: send_json(h, {})
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw)
                outer.bodies.append(body)
                outer.headers.append(dict(self.headers))
                outer.answer(self, body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def send_raw(h: BaseHTTPRequestHandler, status: int, data: bytes, ctype: str = "application/json") -> None:
    h.send_response(status)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)


def send_json(h: BaseHTTPRequestHandler, obj: Any, status: int = 200) -> None:
    send_raw(h, status, json.dumps(obj).encode())


@pytest.fixture
def node_server() -> Iterator[Hostile]:
    server = Hostile()
    yield server
    server.close()


def halon6(server: Hostile, **kw: Any) -> NodeSettings:
    values: dict[str, Any] = {"type": "halon6", "api_key": API_KEY, "halon_version": "6.10", "timeout_seconds": 1.0}
    return NodeSettings(name="mx1", api_url=server.url, **{**values, **kw})


def item(transaction: str, queue: Any = 1, marker: str = "1day", **extra: Any) -> dict[str, Any]:
    return {
        "id": {"transaction": transaction, "queue": queue},
        "sender": {"localpart": "a", "domain": "x.example"},
        "recipient": {"localpart": "b", "domain": "y.example"},
        "metadata": {"qid": marker},
        **extra,
    }


# -- 1. a slow-loris answer holds a worker thread far past timeout_seconds ----------------------


def test_slow_loris_answer_is_bounded_by_the_timeout(node_server: Hostile) -> None:
    """timeout_seconds = 1 bounds the whole call: requests' timeout is per read, so a node
    trickling a byte every 0.5 s must still be cut off near the deadline."""
    trickle_seconds = 6.0

    def slow(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        data = b" " * 12 + b"{}"
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.flush()
        for ch in data:
            h.wfile.write(bytes([ch]))
            h.wfile.flush()
            time.sleep(trickle_seconds / len(data))

    node_server.answer = slow
    started = time.monotonic()
    with HalonGateway(halon6(node_server)) as gw:
        try:
            gw.find("T1")
        except GatewayError:
            pass
    elapsed = time.monotonic() - started
    assert elapsed < 3.0, f"a 1 s timeout let one call run {elapsed:.1f}s"


# -- 2. an answer with no size bound ----------------------------------------------------------


def test_100k_items_for_other_transactions(node_server: Hostile) -> None:
    """A node answering 100k items none of which we asked for: ignored (fine), but how long?"""
    many = [item(f"OTHER-{i}") for i in range(100_000)]
    data = json.dumps({"items": many}).encode()
    node_server.answer = lambda h, body: send_raw(h, 200, data)
    started = time.monotonic()
    with HalonGateway(halon6(node_server, timeout_seconds=30.0)) as gw:
        assert gw.find("T1") == []
    elapsed = time.monotonic() - started
    print(f"100k foreign items: {len(data) / 1e6:.1f} MB parsed in {elapsed:.1f}s")


# -- 3. deeply nested JSON ----------------------------------------------------------------------


def test_deeply_nested_json_is_a_gateway_error(node_server: Hostile) -> None:
    """An answer nested 100k levels deep is a GatewayError (not a RecursionError the worker
    would retry as a crash, or a traceback from check-gateway)."""
    data = b'{"items": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    node_server.answer = lambda h, body: send_raw(h, 200, data)
    with HalonGateway(halon6(node_server)) as gw, pytest.raises(GatewayError):
        gw.find("T1")


# -- 4. wrong types in items ----------------------------------------------------------------


@pytest.mark.parametrize("queue", [1.5, -1, "1e3", True, None, "١", [], {}, "18446744073709551617"])
def test_wrong_queue_types_are_errors_never_silent(node_server: Hostile, queue: Any) -> None:
    node_server.answer = lambda h, body: send_json(h, {"items": [item("T1", queue=queue)]})
    with HalonGateway(halon6(node_server)) as gw:
        try:
            copies = gw.find("T1")
        except GatewayError as exc:
            assert "id.queue" in str(exc)
            return
    # Accepted values must be a sensible non-negative int.
    assert all(isinstance(c.queue, int) and c.queue >= 0 for c in copies), copies
    print(queue, "->", [c.queue for c in copies])


def test_metadata_non_string_values(node_server: Hostile) -> None:
    meta = {"qid": 1, "score": True, "received": [1], "senderip": {"a": 1}}
    node_server.answer = lambda h, body: send_json(h, {"items": [{**item("T1"), "metadata": meta}]})
    with HalonGateway(halon6(node_server)) as gw:
        [copy] = gw.find("T1")
    assert copy.quarantine == "qid=1"  # an int marker value is accepted as text
    assert copy.spam_score is None and copy.received_at is None


def test_transaction_differing_only_in_case_is_not_ours(node_server: Hostile) -> None:
    node_server.answer = lambda h, body: send_json(h, {"items": [item("t1"), item("T1 ")]})
    with HalonGateway(halon6(node_server)) as gw:
        assert gw.find("T1") == []
        assert gw.find_many(["T1"]) == {"T1": []}


def test_error_field_in_a_200_is_read_as_empty(node_server: Hostile) -> None:
    """A 200 that carries {"error": ...} and no items is an error, not "nothing held" (which
    would read as expired)."""
    node_server.answer = lambda h, body: send_json(h, {"error": "permission denied for queue"})
    with HalonGateway(halon6(node_server)) as gw, pytest.raises(GatewayError):
        gw.find("T1")


def test_release_does_not_count_a_200_error_answer_as_released(node_server: Hostile) -> None:
    """List says held; the G answers 200 {"error": ...}: a gateway error (retried), never "released"."""

    def answer(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        if body["command"] == "F":
            send_json(h, {"items": [item("T1")]})
        else:
            send_json(h, {"error": "not permitted"})

    node_server.answer = answer
    with HalonGateway(halon6(node_server)) as gw:
        with pytest.raises(GatewayError, match="not permitted"):
            gw.release("T1", 1)


# -- 5. a 64-bit queue id reaches a 32-bit column --------------------------------------------


def test_a_64bit_queue_id_locates_on_both_databases(node_server: Hostile, database_url: str, smtp_server: Any) -> None:
    """A 64-bit queue id ("4294967296") is stored and located on both databases (the column
    is BIGINT on PostgreSQL)."""
    from sqlalchemy import select

    from release.db.models import Job, Recipient
    from release.devtools.simulator import HalonSimulator, SimulatorServer
    from tests.support.held import build_stack_with_nodes
    from tests.support.stack import close_stack, drain_due
    from tests.support.visitor import report_path, submit_report

    big = "4294967296"

    marker = ["1day"]

    def answer(h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        payload = body["payload"]
        if body["command"] == "G" and "metadata" in payload:
            marker[0] = payload["metadata"]["qid"]
        if body["command"] == "F" and any(i.get("transaction") == "T-BIG" for i in payload["conditions"]["ids"]):
            send_json(h, {"items": [item("T-BIG", queue=big, marker=marker[0])]})
        else:
            send_json(h, {})

    node_server.answer = answer
    with SimulatorServer(HalonSimulator(generation=6)) as sim_server:
        stack = build_stack_with_nodes(database_url, sim_server, smtp_server, halon6(node_server, timeout_seconds=2))
        try:
            response = submit_report(stack.new_client(), stack, report_path(stack, "T-BIG"))
            assert response.status_code == 303, response.text
            drain_due(stack.worker, horizon=5)
            with stack.services.db.session() as session:
                queues = session.scalars(select(Recipient.queue)).all()
                errors: list[tuple[object, ...]] = [
                    (j.kind, j.state, j.attempts, j.last_error) for j in session.scalars(select(Job)).all()
                ]
                from release.db.models import Report

                errors += [(r.state, r.error) for r in session.scalars(select(Report)).all()]
        finally:
            close_stack(stack)
    assert queues == [int(big)], errors
