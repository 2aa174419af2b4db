"""Hostile-review reproducers for `flask --app app check-gateway`: a node that fails half-way
through the re-mark round trip. Tests that FAIL are findings."""

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
    """A halon6 node holding one copy of T1 (qid=1day); the n-th G (1-based) answers 503."""

    def __init__(self, fail_update: int) -> None:
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
        if self.updates == self.fail_update:
            return 503, {"error": "overloaded"}
        self.marker = body["payload"]["metadata"]["qid"]
        return 200, {}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def half_way() -> Iterator[HalfWayNode]:
    node = HalfWayNode(fail_update=2)
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


def test_break_a_failure_after_the_remark_says_the_copy_was_left_changed(tmp_path: Path, half_way: HalfWayNode) -> None:
    """re-mark short -> long works, long -> short answers 503: the copy stays on qid=7days,
    out of reach of Halon's cron delete (it deletes by qid=1day) and unknown to the service.
    The operator expects the output to say so and how to put it back."""
    result = (
        app_for(tmp_path, half_way.url)
        .test_cli_runner()
        .invoke(args=["check-gateway", "--node", "mx1", "--message", "T1"])
    )
    print(result.output)
    assert result.exit_code == 1
    assert half_way.marker == "7days"  # the node is left changed
    assert "qid=1day" in result.output.split("FAIL")[-1], "the FAIL line does not say the copy was left re-marked"
