"""`check-gateway` through Flask's CLI runner against the simulator of each generation: the
operator's one-command proof that the node accepts every shape the service sends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from release import create_app
from release.config import settings_from_mapping
from release.devtools.simulator import HalonSimulator, SimulatorServer
from tests.support.config import make_config


@pytest.fixture(params=[5, 6], ids=["halon5", "halon6"])
def node_server(request: pytest.FixtureRequest) -> Iterator[SimulatorServer]:
    sim = HalonSimulator({"release": "sim-password-0123"}, generation=request.param)
    with SimulatorServer(sim) as server:
        yield server


@pytest.fixture
def app(tmp_path: Path, node_server: SimulatorServer) -> Flask:
    return create_app(settings_from_mapping(make_config(f"sqlite:///{tmp_path / 'c.sqlite3'}", node_server, 2525)))


def quarantines(sim: HalonSimulator) -> tuple[str, str]:
    return ("mailquarantine:1", "mailquarantine:2") if sim.generation == 5 else ("qid=1day", "qid=7days")


def test_without_a_message_it_checks_access_and_changes_nothing(app: Flask, node_server: SimulatorServer) -> None:
    sim = node_server.sim
    t = sim.add_message("a@x.example", ["b@y.example"], "hi")
    result = app.test_cli_runner().invoke(args=["check-gateway", "--node", "mx1"])
    assert result.exit_code == 0, result.output
    assert "answered empty" in result.output and "all checks passed" in result.output
    assert [b["command"] for b in sim.api_calls()] == ["F"]
    assert sim.copies(t)[0].quarantine == quarantines(sim)[0]


@pytest.mark.parametrize("start", [0, 1], ids=["short", "long"])
def test_with_a_message_it_remarks_and_puts_every_copy_back(
    app: Flask, node_server: SimulatorServer, start: int
) -> None:
    sim = node_server.sim
    held_in = quarantines(sim)[start]
    t = sim.add_message("a@x.example", ["b@y.example", "c@y.example"], "hi", quarantine=held_in)
    result = app.test_cli_runner().invoke(args=["check-gateway", "--node", "mx1", "--message", t])
    assert result.exit_code == 0, result.output
    assert result.output.count("read back") == 2 and "all checks passed" in result.output
    assert [c.quarantine for c in sim.copies(t)] == [held_in, held_in]
    assert [c.state for c in sim.copies(t)] == ["hold", "hold"]
    content_list = ["F"] if sim.generation == 5 else []  # the preview's list by (transaction, queue)
    assert [b["command"] for b in sim.api_calls()] == ["F", "F", "G", "F", "F", "G", "F", "F", *content_list]


def test_with_a_message_it_reads_the_start_of_the_message_on_5x(app: Flask, node_server: SimulatorServer) -> None:
    sim = node_server.sim
    t = sim.add_message("a@x.example", ["b@y.example"], "hi", raw=b"Subject: hi\r\n\r\n" + b"x" * 5000)
    result = app.test_cli_runner().invoke(args=["check-gateway", "--node", "mx1", "--message", t])
    assert result.exit_code == 0, result.output
    if sim.generation == 5:
        assert "read the message's first 1024 of 5015 bytes (preview)" in result.output
        assert [r.path for r in sim.requests_log][-2:] == ["/api/5.3.0/system/files", "/api/5.3.0/system/files:size"]
    else:
        assert "note  no preview: halon node mx1: Halon 6.x has no known API" in result.output


@pytest.mark.parametrize("node_server", [5], ids=["halon5"], indirect=True)
def test_a_node_answering_the_file_read_wrongly_fails(app: Flask, node_server: SimulatorServer) -> None:
    sim = node_server.sim
    t = sim.add_message("a@x.example", ["b@y.example"], "hi")
    sim.respond_next(200, {"data": "", "size": 0, "offset": 7}, path="/api/5.3.0/system/files")
    result = app.test_cli_runner().invoke(args=["check-gateway", "--node", "mx1", "--message", t])
    assert result.exit_code == 1 and "FAIL" in result.output and "'offset' is 7" in result.output
    assert sim.copies(t)[0].quarantine == "mailquarantine:1"  # re-marked and put back before the read


def test_a_message_the_node_does_not_hold_fails_with_a_reason(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["check-gateway", "--node", "mx1", "--message", "no-such-id"])
    assert result.exit_code == 1 and "FAIL" in result.output and "no copies of no-such-id" in result.output


def test_a_copy_marked_otherwise_than_the_config_says_fails_with_a_hint(
    app: Flask, node_server: SimulatorServer
) -> None:
    other = "mailquarantine:9" if node_server.sim.generation == 5 else "qid=other"
    t = node_server.sim.add_message("a@x.example", ["b@y.example"], "hi", quarantine=other)
    result = app.test_cli_runner().invoke(args=["check-gateway", "--node", "mx1", "--message", t])
    assert result.exit_code == 1 and "short_quarantine" in result.output
    assert node_server.sim.api_calls("G") == []


def test_trace_prints_requests_and_answers_without_the_secret(app: Flask, node_server: SimulatorServer) -> None:
    node = app.extensions["release"].settings.node("mx1")
    result = app.test_cli_runner().invoke(args=["check-gateway", "--node", "mx1", "--trace"])
    assert result.exit_code == 0, result.output
    assert "-> POST" in result.output and "<- HTTP 200" in result.output and '"command": "F"' in result.output
    assert node.secret not in result.output and "***" in result.output


def test_wrong_credentials_fail_with_what_to_check(tmp_path: Path, node_server: SimulatorServer) -> None:
    config = make_config(f"sqlite:///{tmp_path / 'c.sqlite3'}", node_server, 2525)
    key = "api_key" if node_server.sim.generation == 6 else "password"
    config["nodes"][0][key] = "Wrong-Credential-123456"
    app = create_app(settings_from_mapping(config))
    result = app.test_cli_runner().invoke(args=["check-gateway", "--node", "mx1"])
    assert result.exit_code == 1 and "401" in result.output and key in result.output
    assert "Wrong-Credential-123456" not in result.output


def test_unknown_node_is_a_usage_error(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["check-gateway", "--node", "nope"])
    assert result.exit_code == 2 and "unknown node" in result.output
