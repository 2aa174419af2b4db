"""`flask --app app check-gateway` against a node that fails half-way through the re-mark
round trip: a passing blip is retried and the copy ends as it was; a node that keeps failing
gets a plain "LEFT CHANGED" line saying what to put back."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from release import create_app
from release.config import settings_from_mapping

KEY = "Hostile-Test-Api-Key-0123456789"


class HalfWayNode:
    """A halon6 node holding one copy of T1 (qid=1day); from the n-th G (1-based) on, ``failing``
    updates answer 503."""

    def __init__(self, fail_update: int, failing: int = 1) -> None:
        self.marker = "1day"
        self.updates = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                status, answer = outer.answer(body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.fail_update = fail_update
        self.failing = failing
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        ids = body["payload"]["conditions"]["ids"]
        if body["command"] == "F":
            if all(i["transaction"] != "T1" for i in ids):
                return 200, {}
            return 200, {"items": [{"id": {"transaction": "T1", "queue": 1}, "metadata": {"qid": self.marker}}]}
        self.updates += 1
        if self.fail_update <= self.updates < self.fail_update + self.failing:
            return 503, {"error": "overloaded"}
        self.marker = body["payload"]["metadata"]["qid"]
        return 200, {}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def half_way() -> Iterator[HalfWayNode]:
    node = HalfWayNode(fail_update=2, failing=2)  # the put-back and its retry both fail
    yield node
    node.close()


@pytest.fixture
def blip() -> Iterator[HalfWayNode]:
    node = HalfWayNode(fail_update=2, failing=1)
    yield node
    node.close()


def app_for(tmp_path: Path, url: str) -> Flask:
    config = {
        "app": {"public_url": "https://release.example.test", "secret_key": secrets.token_urlsafe(32)},
        "database": {"url": f"sqlite:///{tmp_path / 'c.sqlite3'}"},
        "links": {"keys": [secrets.token_urlsafe(24)]},
        "captcha": {"provider": "altcha"},
        "nodes": [{"name": "mx1", "type": "halon6", "api_url": url, "api_key": KEY, "halon_version": "6.10"}],
    }
    return create_app(settings_from_mapping(config))


def test_a_blip_while_putting_the_copy_back_is_retried(tmp_path: Path, blip: HalfWayNode) -> None:
    result = (
        app_for(tmp_path, blip.url).test_cli_runner().invoke(args=["check-gateway", "--node", "mx1", "--message", "T1"])
    )
    assert result.exit_code == 0, result.output
    assert blip.marker == "1day"


def test_a_node_that_keeps_failing_is_reported_as_left_changed(tmp_path: Path, half_way: HalfWayNode) -> None:
    """re-mark short -> long works, long -> short keeps answering 503: the copy stays on
    qid=7days, out of reach of the short cron line and unknown to the service; the output says
    so and what to put back."""
    result = (
        app_for(tmp_path, half_way.url)
        .test_cli_runner()
        .invoke(args=["check-gateway", "--node", "mx1", "--message", "T1"])
    )
    assert result.exit_code == 1
    assert half_way.marker == "7days"  # the node is left changed
    assert "LEFT CHANGED: queue 1 of T1" in result.output and "re-mark the copies as qid=1day" in result.output
