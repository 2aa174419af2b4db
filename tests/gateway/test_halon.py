"""HalonGateway against the real HTTP simulator: request shapes, mapping, paging, errors."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from release.config import NodeSettings
from release.devtools.simulator import HalonSimulator, SimulatorServer
from release.gateway import GatewayError, GatewayRejected, HalonGateway, gateway_for
from tests.support.simulator import PASSWORD, USER

JSON_TYPE = "application/json; charset=utf-8"


@pytest.fixture
def node(server: SimulatorServer) -> NodeSettings:
    return server.node_settings("mx1", timeout_seconds=2.0)


@pytest.fixture
def gateway(node: NodeSettings) -> Iterator[HalonGateway]:
    with HalonGateway(node) as gw:
        yield gw


def _update_body(ids: list[dict[str, Any]], **change: Any) -> dict[str, Any]:
    return {"command": "G", "program": "smtpd", "payload": {"conditions": {"ids": ids}, **change}}


# -- find -------------------------------------------------------------------------------------


def test_find_sends_list_command_with_auth_and_json_type(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = sim.add_message("a@x.example", ["b@y.example"], "hi")
    gateway.find(t)
    [record] = sim.requests_log
    assert record.method == "POST" and record.path == "/api/protobuf"
    assert record.username == USER and record.authorized
    assert record.headers["Content-Type"] == JSON_TYPE
    assert record.body == {
        "command": "F",
        "program": "smtpd",
        "payload": {"conditions": {"ids": [{"transaction": t}]}, "paging": {"offset": 0, "limit": 1000}},
    }


def test_find_maps_queue_items(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = sim.add_message(
        "alice@sender.example",
        ["bob@example.com", "carol@example.com"],
        "Quarterly report",
        ts=1_700_000_000.5,
        score=87.5,
        metadata={"_scores.rpd.refid": "abc", "custom": "x"},
        sender_ip="198.51.100.9",
        size=4321,
    )
    copies = gateway.find(t)
    assert [(c.queue, c.recipient) for c in copies] == [(1, "bob@example.com"), (2, "carol@example.com")]
    first = copies[0]
    assert first.transaction == t
    assert first.sender == "alice@sender.example"
    assert first.subject == "Quarterly report"
    assert first.received_at == datetime.fromtimestamp(1_700_000_000.5, UTC)
    assert first.received_at.tzinfo is not None
    assert first.quarantine == "mailquarantine:1"
    assert first.size == 4321
    assert first.sender_ip == "198.51.100.9"
    assert first.spam_score == 87.5
    assert dict(first.metadata) == {
        "_quarantineid": "1",
        "_scores.rpd.score": "87.5",
        "_scores.rpd.refid": "abc",
        "custom": "x",
    }


def test_find_one_recipient_sends_queue_in_id(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = sim.add_message("a@x.example", ["b@y.example", "c@y.example"], "hi")
    copies = gateway.find(t, queue=2)
    assert [c.recipient for c in copies] == ["c@y.example"]
    assert sim.api_calls("F")[0]["payload"]["conditions"]["ids"] == [{"transaction": t, "queue": 2}]


def test_find_unknown_or_expired_returns_empty(sim: HalonSimulator, gateway: HalonGateway) -> None:
    assert gateway.find("00000000-0000-0000-0000-000000000000") == []
    t = sim.add_message("a@x.example", ["b@y.example"], "hi")
    sim.remove(t)
    assert gateway.find(t) == []


def test_find_follows_paging(server: SimulatorServer, sim: HalonSimulator, gateway: HalonGateway) -> None:
    sim.max_page_size = 2
    recipients = [f"r{i}@example.com" for i in range(5)]
    t = sim.add_message("a@x.example", recipients, "many")
    copies = gateway.find(t)
    assert [c.recipient for c in copies] == recipients
    assert [c["payload"]["paging"]["offset"] for c in sim.api_calls("F")] == [0, 2, 4]


def test_find_released_copy_is_not_in_quarantine(node: NodeSettings, server: SimulatorServer) -> None:
    server.sim.auto_deliver = False
    t = server.sim.add_message("a@x.example", ["b@y.example"], "hi")
    gw = HalonGateway(node)
    assert gw.release(t, 1) == 1
    [copy] = gw.find(t)
    assert copy.quarantine is None


def test_find_survives_malformed_items(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = "11111111-2222-3333-4444-555555555555"
    junk: list[Any] = [
        "not an object",
        {"no": "id"},
        {"id": {"transaction": t, "queue": "not a number"}},
        {"id": {"transaction": "someone-else", "queue": 1}},
        {
            "id": {"transaction": t, "queue": "7"},  # proto3 JSON: 64-bit ints as strings
            "ts": "garbage",
            "sender": "not an object",
            "recipient": {"localpart": "bob\r\nBcc: x", "domain": "example.com"},
            "subject": ["list"],
            "size": -5,
            "senderip": 12,
            "hold": True,
            "metadata": {"_quarantineid": "x1", "_scores.rpd.score": "nan", "n": 3, "bad": {"nested": 1}},
        },
    ]
    sim.respond_next(200, {"items": junk, "paging": {"total": "5"}})
    [copy] = gateway.find(t)
    assert copy.queue == 7
    assert copy.received_at == datetime.fromtimestamp(0, UTC)
    assert copy.sender == "" and copy.subject == "" and copy.sender_ip == "" and copy.size == 0
    assert "\r" not in copy.recipient and "\n" not in copy.recipient
    assert copy.quarantine is None
    assert copy.spam_score is None
    assert dict(copy.metadata) == {"_quarantineid": "x1", "_scores.rpd.score": "nan", "n": "3"}


def test_find_accepts_answer_without_items(sim: HalonSimulator, gateway: HalonGateway) -> None:
    sim.respond_next(200, {})  # proto3 JSON leaves out empty lists and zeros
    assert gateway.find("t") == []


def test_find_json_404_means_nothing_found(sim: HalonSimulator, gateway: HalonGateway) -> None:
    sim.respond_next(404, {"error": "not found"})
    assert gateway.find("t") == []


def test_non_api_404_is_rejected_not_silently_empty(node: NodeSettings, server: SimulatorServer) -> None:
    wrong = HalonGateway(NodeSettings(name="mx1", api_url=server.url + "/nowhere", username=USER, password=PASSWORD))
    with pytest.raises(GatewayRejected, match="api_url"):
        wrong.find("t")


# -- updates ----------------------------------------------------------------------------------


def test_move_sets_quarantine_id_for_full_ids(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = sim.add_message("a@x.example", ["b@y.example", "c@y.example"], "hi")
    assert gateway.move(t, [1, 2], "mailquarantine:2") == 2
    [body] = sim.api_calls("G")
    ids = [{"transaction": t, "queue": 1}, {"transaction": t, "queue": 2}]
    assert body == _update_body(ids, metadata={"_quarantineid": "2"})
    assert [c.quarantine for c in sim.copies(t)] == ["mailquarantine:2", "mailquarantine:2"]
    assert [c.quarantine for c in gateway.find(t)] == ["mailquarantine:2", "mailquarantine:2"]


def test_a_batch_is_one_list_and_one_update_request(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t1 = sim.add_message("a@x.example", ["b@y.example", "c@y.example"], "one")
    t2 = sim.add_message("d@x.example", ["e@y.example"], "two")
    sim.add_message("f@x.example", ["g@y.example"], "not asked for")

    found = gateway.find_many([t1, t2, "gone-already", t1])

    [listed] = sim.api_calls("F")
    assert listed["payload"]["conditions"]["ids"] == [
        {"transaction": t1},
        {"transaction": t2},
        {"transaction": "gone-already"},
    ]
    assert {t: [c.recipient for c in copies] for t, copies in found.items()} == {
        t1: ["b@y.example", "c@y.example"], t2: ["e@y.example"], "gone-already": []
    }  # fmt: skip
    assert gateway.move_many([(t1, 1), (t2, 1), (t1, 1)], "mailquarantine:2") == 2
    [body] = sim.api_calls("G")
    ids = [{"transaction": t1, "queue": 1}, {"transaction": t2, "queue": 1}]
    assert body == _update_body(ids, metadata={"_quarantineid": "2"})
    assert [c.quarantine for c in sim.copies(t1)] == ["mailquarantine:2", "mailquarantine:1"]
    assert gateway.find_many([]) == {} and gateway.move_many([], "mailquarantine:2") == 0
    assert len(sim.api_calls()) == 2  # empty batches never reach the node


def test_move_rejects_bad_quarantine_name(sim: HalonSimulator, gateway: HalonGateway) -> None:
    with pytest.raises(ValueError):
        gateway.move("t", [1], "quarantine-two")
    assert sim.requests_log == []


def test_release_moves_copy_to_active_queue(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = sim.add_message("a@x.example", ["b@y.example", "c@y.example"], "hi")
    assert gateway.release(t, 2) == 1
    assert sim.api_calls("G") == [_update_body([{"transaction": t, "queue": 2}], move={"queue": 0})]
    assert [c.state for c in sim.copies(t)] == ["hold", "delivered"]
    assert [d.recipient for d in sim.delivered()] == ["c@y.example"]
    assert gateway.release(t, 2) == 0  # delivered copies have left the queue


@pytest.mark.parametrize(
    ("shape", "change"),
    [("action", {"action": "DELETE"}), ("task", {"task": {"actiontype": 0}})],
)
def test_delete_body_follows_node_shape(
    server: SimulatorServer, sim: HalonSimulator, shape: str, change: dict[str, Any]
) -> None:
    t = sim.add_message("a@x.example", ["b@y.example", "c@y.example"], "hi")
    gw = HalonGateway(server.node_settings("mx1", delete_shape=shape))
    assert gw.delete(t, [1, 2]) == 2
    ids = [{"transaction": t, "queue": 1}, {"transaction": t, "queue": 2}]
    assert sim.api_calls("G") == [_update_body(ids, **change)]
    assert [c.state for c in sim.copies(t)] == ["deleted", "deleted"]


def test_delete_of_copy_halon_already_removed_is_zero(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = sim.add_message("a@x.example", ["b@y.example"], "hi")
    sim.remove(t)
    assert gateway.delete(t, [1]) == 0


def test_update_answer_without_affected_means_zero(sim: HalonSimulator, gateway: HalonGateway) -> None:
    sim.respond_next(200, {"working": 0})
    assert gateway.delete("t", [1]) == 0
    sim.respond_next(200, {"affected": "3"})
    assert gateway.delete("t", [1]) == 3
    sim.respond_next(200, {"affected": "lots"})
    with pytest.raises(GatewayError):
        gateway.delete("t", [1])


def test_empty_id_lists_are_never_sent(sim: HalonSimulator, gateway: HalonGateway) -> None:
    assert gateway.move("t", [], "mailquarantine:2") == 0
    assert gateway.delete("t", []) == 0
    assert gateway.delete("", [1]) == 0
    assert gateway.find("") == []
    assert sim.requests_log == []


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_errors_are_retryable(sim: HalonSimulator, gateway: HalonGateway, status: int) -> None:
    sim.fail_next(1, status=status)
    with pytest.raises(GatewayError) as caught:
        gateway.find("t")
    assert not isinstance(caught.value, GatewayRejected)
    assert "mx1" in str(caught.value) and str(status) in str(caught.value)


def test_timeout_is_retryable(server: SimulatorServer, sim: HalonSimulator) -> None:
    gw = HalonGateway(server.node_settings("mx1", timeout_seconds=0.3))
    sim.timeout_next(1, seconds=5)
    with pytest.raises(GatewayError) as caught:
        gw.release("t", 1)
    assert not isinstance(caught.value, GatewayRejected)
    assert "mx1" in str(caught.value)


def test_unreachable_node_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gw = HalonGateway(NodeSettings(name="mx1", api_url=f"http://127.0.0.1:{port}", password=PASSWORD))
    with pytest.raises(GatewayError) as caught:
        gw.find("t")
    assert not isinstance(caught.value, GatewayRejected)
    assert PASSWORD not in str(caught.value)


def test_wrong_password_is_rejected_without_leaking_it(server: SimulatorServer) -> None:
    wrong = "Wrong-Password-123456"
    gw = HalonGateway(server.node_settings("mx1", password=wrong))
    with pytest.raises(GatewayRejected) as caught:
        gw.find("t")
    text = str(caught.value)
    assert "401" in text and "mx1" in text
    assert wrong not in text and PASSWORD not in text and "Authorization" not in text
    assert server.sim.requests_log[0].authorized is False


def test_bad_request_carries_server_reason_truncated(sim: HalonSimulator, gateway: HalonGateway) -> None:
    sim.respond_next(400, {"error": "invalid request", "detail": "x" * 1000})
    with pytest.raises(GatewayRejected) as caught:
        gateway.find("t")
    text = str(caught.value)
    assert "invalid request" in text
    assert len(text) < 400


def test_server_echoing_the_password_is_redacted(sim: HalonSimulator, gateway: HalonGateway) -> None:
    sim.respond_next(403, {"message": f"user {USER} with password {PASSWORD} may not do this"})
    with pytest.raises(GatewayRejected) as caught:
        gateway.delete("t", [1])
    assert PASSWORD not in str(caught.value)
    assert "may not do this" in str(caught.value)


def test_non_json_success_is_an_error(sim: HalonSimulator, gateway: HalonGateway) -> None:
    sim.respond_next(200, "<html>proxy login</html>")
    with pytest.raises(GatewayError, match="not JSON"):
        gateway.find("t")


# -- health, construction ---------------------------------------------------------------------


def test_health_reports_ok(sim: HalonSimulator, gateway: HalonGateway) -> None:
    health = gateway.health()
    assert health.reachable and health.authenticated
    assert health.latency_ms >= 0
    assert sim.requests_log[0].path == "/api/5.3.0/license" and sim.requests_log[0].authorized


def test_health_reports_bad_credentials(server: SimulatorServer) -> None:
    wrong = "Wrong-Password-123456"
    health = HalonGateway(server.node_settings("mx1", password=wrong)).health()
    assert health.reachable and not health.authenticated
    assert "401" in health.detail and wrong not in health.detail


def test_health_reports_unreachable_without_raising() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    health = HalonGateway(NodeSettings(name="mx1", api_url=f"http://127.0.0.1:{port}", password=PASSWORD)).health()
    assert not health.reachable and not health.authenticated
    assert health.detail and PASSWORD not in health.detail


def test_tls_settings_reach_the_session(tmp_path: Any) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    with_ca = HalonGateway(NodeSettings(name="mx1", api_url="https://mx1.example", ca_file=str(ca)))
    assert with_ca._session.verify == str(ca)
    insecure = HalonGateway(NodeSettings(name="mx1", api_url="https://mx1.example", verify_tls=False))
    assert insecure._session.verify is False
    default = gateway_for(NodeSettings(name="mx2", api_url="https://mx2.example", username="u", password="p"))
    assert default._session.verify is True and default._session.auth == ("u", "p") and default.name == "mx2"


def test_repr_does_not_show_password(node: NodeSettings) -> None:
    assert PASSWORD not in repr(HalonGateway(node))


def test_redirect_is_not_followed(sim: HalonSimulator, gateway: HalonGateway) -> None:
    sim.respond_next(302, {"error": "moved"})
    with pytest.raises(GatewayRejected, match="302"):
        gateway.release("t", 1)
    assert len(sim.requests_log) == 1
