"""/readyz against a real database and the Halon simulator over HTTP."""

from __future__ import annotations

import threading
from typing import Any

from release import create_app
from release.config import DatabaseSettings, replace
from release.gateway import NodeHealth
from release.web.probes import NodeChecker
from tests.support.stack import Stack


def test_ready_when_database_and_node_answer(stack: Stack) -> None:
    response = stack.client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "down": [], "nodes": {"up": ["mx1"], "down": []}}
    assert response.headers["Cache-Control"] == "no-store"


def test_node_down_is_503_and_says_so(stack: Stack) -> None:
    stack.simulator.stop()
    response = stack.client.get("/readyz")
    assert response.status_code == 503
    assert response.json["down"] == ["gateway"]
    assert response.json["nodes"] == {"up": [], "down": ["mx1"]}


def test_wrong_gateway_password_is_not_ready(stack: Stack) -> None:
    stack.sim.users["release"] = "another-password-000"
    response = stack.client.get("/readyz")
    assert response.status_code == 503 and response.json["down"] == ["gateway"]


def test_database_down_is_503(stack: Stack) -> None:
    settings = stack.services.settings
    if stack.services.db.is_sqlite:
        url = "sqlite:////nonexistent-directory/release.sqlite3"
    else:
        url = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"
    app = create_app(replace(settings, database=DatabaseSettings(url=url)))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["down"] == ["database"]
    app.extensions["release"].db.dispose()


def test_probe_storm_checks_the_gateway_once_per_period(stack: Stack) -> None:
    before = len(stack.sim.requests_log)
    threads = [threading.Thread(target=lambda: stack.new_client().get("/readyz")) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for _ in range(30):
        assert stack.client.get("/readyz").status_code == 200
    assert len(stack.sim.requests_log) - before == 1


class _SlowNode:
    name = "slow"

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def health(self) -> NodeHealth:
        self.release.wait(10)
        return NodeHealth(True, True, 0.0)


class _GoodNode:
    name = "good"

    def health(self) -> NodeHealth:
        return NodeHealth(True, True, 1.0)


def test_a_hanging_node_is_bounded_by_the_deadline() -> None:
    gate = threading.Event()
    gateways: dict[str, Any] = {"slow": _SlowNode(gate), "good": _GoodNode()}
    checker = NodeChecker(gateways, deadline=0.3)
    check = checker.current()
    gate.set()
    assert check.up == ("good",) and check.down == ("slow",)


def test_cache_expires_after_ttl() -> None:
    now = [100.0]
    checker = NodeChecker({"good": _GoodNode()}, ttl=5.0, clock=lambda: now[0])  # type: ignore[dict-item]
    checker.current()
    now[0] += 4.9
    checker.current()
    assert checker.checks_run == 1
    now[0] += 0.2
    checker.current()
    assert checker.checks_run == 2
