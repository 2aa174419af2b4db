"""HalonGateway against the real HTTP simulator, on both generations: only attested request
shapes, mapping, outcomes read back from the node, errors and secrets."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from release.config import NodeSettings
from release.devtools.simulator import HalonSimulator, SimulatorServer
from release.gateway import GatewayError, GatewayRejected, HalonGateway, gateway_for
from tests.support.halon_shapes import is_attested
from tests.support.simulator import API_KEY, PASSWORD, USER

JSON_TYPE = "application/json; charset=utf-8"


@pytest.fixture
def node(server: SimulatorServer) -> NodeSettings:
    return server.node_settings("mx1", timeout_seconds=2.0)


@pytest.fixture
def gateway(node: NodeSettings, sim: HalonSimulator) -> Iterator[HalonGateway]:
    with HalonGateway(node) as gw:
        yield gw
    # Whatever the test did, the node only ever saw shapes Halon's material attests.
    for body in sim.api_calls():
        assert is_attested(body, sim.generation), body


def short(sim: HalonSimulator) -> str:
    return "mailquarantine:1" if sim.generation == 5 else "qid=1day"


def long(sim: HalonSimulator) -> str:
    return "mailquarantine:2" if sim.generation == 5 else "qid=7days"


def secret(sim: HalonSimulator) -> str:
    return PASSWORD if sim.generation == 5 else API_KEY


def wrong_credential(server: SimulatorServer) -> NodeSettings:
    if server.sim.generation == 5:
        return server.node_settings("mx1", password="Wrong-Password-123456")
    return server.node_settings("mx1", api_key="Wrong-Api-Key-123456")


# -- find -------------------------------------------------------------------------------------


def test_find_sends_the_attested_list_with_the_generations_auth(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = sim.add_message("a@x.example", ["b@y.example"], "hi")
    gateway.find(t)
    [record] = sim.requests_log
    assert record.method == "POST" and record.path == "/api/protobuf" and record.authorized
    assert record.headers["Content-Type"] == JSON_TYPE
    expected: dict[str, Any] = {
        "command": "F",
        "program": "smtpd",
        "payload": {"conditions": {"ids": [{"transaction": t}]}},
    }
    if sim.generation == 6:
        expected["version"] = {"major": 6, "minor": 10}
        assert record.headers["X-Api-Key"] == API_KEY and "Authorization" not in record.headers
    else:
        assert record.username == USER and "X-Api-Key" not in record.headers
    assert record.body == expected


def test_find_maps_queue_items(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = sim.add_message(
        "alice@sender.example",
        ["bob@example.com", "carol@example.com"],
        "Quarterly report",
        ts=1_700_000_000,
        score=87.5,
        sender_ip="198.51.100.9",
    )
    copies = gateway.find(t)
    assert [(c.queue, c.recipient) for c in copies] == [(1, "bob@example.com"), (2, "carol@example.com")]
    first = copies[0]
    assert first.transaction == t and first.sender == "alice@sender.example"
    assert first.subject == "Quarterly report" and first.quarantine == short(sim)
    assert first.spam_score == 87.5
    if sim.generation == 6:  # the 6.x HSL records these in metadata; 5.x has no attested field
        assert first.received_at == datetime.fromtimestamp(1_700_000_000, UTC)
        assert first.sender_ip == "198.51.100.9"
    else:
        assert first.received_at is None and first.sender_ip == ""


def test_find_one_recipient_sends_queue_in_id(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = sim.add_message("a@x.example", ["b@y.example", "c@y.example"], "hi")
    [copy] = gateway.find(t, queue=2)
    assert copy.recipient == "c@y.example"
    assert sim.api_calls("F")[0]["payload"]["conditions"]["ids"] == [{"transaction": t, "queue": 2}]


def test_find_unknown_or_expired_returns_empty(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = sim.add_message("a@x.example", ["b@y.example"], "hi")
    sim.remove(t)
    assert gateway.find(t) == []
    assert gateway.find("no-such-transaction") == []


def test_released_copy_carries_no_marker_once_delivered(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = sim.add_message("a@x.example", ["b@y.example"], "hi")
    assert gateway.release(t, 1) == 1
    assert gateway.find(t) == []  # delivered: it left the queue
    assert [c.state for c in sim.copies(t)] == ["delivered"]


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"subject": "no id"}, "'id'"),
        ({"id": {"queue": "1"}}, "'id.transaction'"),
        ({"id": {"transaction": "t", "queue": "x"}}, "'id.queue'"),
        ("not an object", "not an object"),
    ],
)
def test_an_item_without_a_field_we_need_is_an_error_naming_it(
    sim: HalonSimulator, gateway: HalonGateway, item: Any, field: str
) -> None:
    sim.respond_next(200, {"items": [item]})
    with pytest.raises(GatewayError) as caught:
        gateway.find("t")
    assert field in str(caught.value) and "items[0]" in str(caught.value)


def test_proto3_defaults_left_out_are_read_as_defaults(sim: HalonSimulator, gateway: HalonGateway) -> None:
    sim.respond_next(200, {})  # an empty items list is left out
    assert gateway.find("t") == []
    sim.respond_next(200, {"items": [{"id": {"transaction": "t"}}]})  # queue 0, no metadata
    [copy] = gateway.find("t")
    assert copy.queue == 0 and copy.quarantine is None and copy.sender == "" and copy.metadata == {}


def test_64_bit_ids_as_strings_or_numbers(sim: HalonSimulator, gateway: HalonGateway) -> None:
    sim.respond_next(200, {"items": [{"id": {"transaction": "t", "queue": "18446744073709551615"}}]})
    assert gateway.find("t")[0].queue == 18446744073709551615
    sim.respond_next(200, {"items": [{"id": {"transaction": "t", "queue": 7}}]})
    assert gateway.find("t")[0].queue == 7


def test_an_answer_about_other_transactions_is_ignored(sim: HalonSimulator, gateway: HalonGateway) -> None:
    sim.respond_next(200, {"items": [{"id": {"transaction": "someone-else", "queue": 1}}]})
    assert gateway.find("t") == []


def test_find_json_404_means_nothing_found(sim: HalonSimulator, gateway: HalonGateway) -> None:
    sim.respond_next(404, {"error": "not found"})
    assert gateway.find("t") == []


def test_non_api_404_is_rejected_not_silently_empty(node: NodeSettings, server: SimulatorServer) -> None:
    wrong = NodeSettings(**{**node.__dict__, "api_url": server.url + "/wrong-prefix"})
    with pytest.raises(GatewayRejected, match="check api_url"):
        HalonGateway(wrong).find("t")


# -- move (extend), release, delete: the outcome is read back ---------------------------------


def test_move_many_is_one_update_and_one_list_read_back(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t1 = sim.add_message("a@x.example", ["b@y.example", "c@y.example"], "one", quarantine=short(sim))
    t2 = sim.add_message("a@x.example", ["d@y.example"], "two", quarantine=short(sim))
    assert gateway.move_many([(t1, 1), (t1, 2), (t2, 1)], long(sim)) == 3
    assert [c.quarantine for c in sim.copies(t1) + sim.copies(t2)] == [long(sim)] * 3
    [update] = sim.api_calls("G")
    key, _, value = long(sim).partition("=") if sim.generation == 6 else ("_quarantineid", "", "2")
    assert update["payload"] == {
        "conditions": {
            "ids": [{"transaction": t1, "queue": 1}, {"transaction": t1, "queue": 2}, {"transaction": t2, "queue": 1}]
        },
        "metadata": {key: value},
    }
    assert [b["command"] for b in sim.api_calls()] == ["G", "F"]


def test_move_does_not_trust_an_accepted_update_that_changed_nothing(
    sim: HalonSimulator, gateway: HalonGateway
) -> None:
    t = sim.add_message("a@x.example", ["b@y.example"], "hi", quarantine=short(sim))
    sim.respond_next(200, {"affected": 1})  # the update answer claims success; nothing moved
    assert gateway.move(t, [1], long(sim)) == 0
    assert sim.copies(t)[0].quarantine == short(sim)


def test_move_of_a_gone_copy_counts_nothing(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = sim.add_message("a@x.example", ["b@y.example"], "hi", quarantine=short(sim))
    sim.remove(t)
    assert gateway.move(t, [1], long(sim)) == 0


def test_move_rejects_a_quarantine_of_the_other_generation(sim: HalonSimulator, gateway: HalonGateway) -> None:
    other = "qid=7days" if sim.generation == 5 else "mailquarantine:2"
    with pytest.raises(ValueError):
        gateway.move("t", [1], other)
    assert sim.requests_log == []


def test_release_lists_then_moves_to_active(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = sim.add_message("a@x.example", ["b@y.example", "c@y.example"], "hi", quarantine=long(sim))
    assert gateway.release(t, 2) == 1
    assert [c.state for c in sim.copies(t)] == ["hold", "delivered"]
    [update] = sim.api_calls("G")
    assert update["payload"] == {"conditions": {"ids": [{"transaction": t, "queue": 2}]}, "move": {"queue": "ACTIVE"}}
    assert [b["command"] for b in sim.api_calls()] == ["F", "G"]


def test_release_of_a_gone_copy_is_zero_and_sends_no_update(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = sim.add_message("a@x.example", ["b@y.example"], "hi")
    sim.remove(t)
    assert gateway.release(t, 1) == 0
    assert sim.api_calls("G") == []


def test_delete_lists_deletes_and_reads_back(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = sim.add_message("a@x.example", ["b@y.example", "c@y.example"], "hi")
    assert gateway.delete(t, [1, 2]) == 2
    assert [c.state for c in sim.copies(t)] == ["deleted", "deleted"]
    [update] = sim.api_calls("G")
    assert update["payload"]["action"] == "DELETE" and "task" not in update["payload"]
    assert [b["command"] for b in sim.api_calls()] == ["F", "G", "F"]


def test_delete_of_a_copy_already_gone_is_zero_without_update(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = sim.add_message("a@x.example", ["b@y.example"], "hi")
    sim.remove(t)
    assert gateway.delete(t, [1]) == 0
    assert sim.api_calls("G") == []


def test_a_delete_the_node_accepted_but_did_not_do_is_an_error(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = sim.add_message("a@x.example", ["b@y.example"], "hi")
    real_update = sim._update
    sim._update = lambda ids, payload: {}  # type: ignore[method-assign] # answers 200, deletes nothing
    try:
        with pytest.raises(GatewayError, match="still listed"):
            gateway.delete(t, [1])
    finally:
        sim._update = real_update  # type: ignore[method-assign]
    assert sim.copies(t)[0].state == "hold"


def test_empty_id_lists_are_never_sent(sim: HalonSimulator, gateway: HalonGateway) -> None:
    assert gateway.move_many([], long(sim)) == 0
    assert gateway.move_many([("", 1)], long(sim)) == 0
    assert gateway.delete("t", []) == 0
    assert gateway.find("") == [] and gateway.find_many(["", ""]) == {}
    assert sim.requests_log == []


# -- errors and secrets -----------------------------------------------------------------------


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


def test_unreachable_node_is_retryable(node: NodeSettings, sim: HalonSimulator) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gw = HalonGateway(NodeSettings(**{**node.__dict__, "api_url": f"http://127.0.0.1:{port}"}))
    with pytest.raises(GatewayError) as caught:
        gw.find("t")
    assert not isinstance(caught.value, GatewayRejected)
    assert secret(sim) not in str(caught.value)


def test_wrong_credential_is_rejected_with_a_hint_and_without_leaking_it(server: SimulatorServer) -> None:
    settings = wrong_credential(server)
    with pytest.raises(GatewayRejected) as caught:
        HalonGateway(settings).find("t")
    text = str(caught.value)
    assert "401" in text and "mx1" in text
    assert ("api_key" if server.sim.generation == 6 else "password") in text
    assert settings.secret not in text and secret(server.sim) not in text
    assert server.sim.requests_log[0].authorized is False


def test_bad_request_carries_server_reason_truncated(sim: HalonSimulator, gateway: HalonGateway) -> None:
    sim.respond_next(400, {"error": "invalid request", "detail": "x" * 1000})
    with pytest.raises(GatewayRejected) as caught:
        gateway.find("t")
    text = str(caught.value)
    assert "invalid request" in text and len(text) < 500
    if sim.generation == 6:
        assert "halon_version" in text  # the likeliest 400 from halon-api: the version envelope


def test_server_echoing_the_secret_is_redacted(sim: HalonSimulator, gateway: HalonGateway) -> None:
    sim.respond_next(403, {"message": f"credential {secret(sim)} may not do this"})
    with pytest.raises(GatewayRejected) as caught:
        gateway.find("t")
    assert secret(sim) not in str(caught.value) and "may not do this" in str(caught.value)


def test_non_json_success_is_an_error(sim: HalonSimulator, gateway: HalonGateway) -> None:
    sim.respond_next(200, "<html>proxy login</html>")
    with pytest.raises(GatewayError, match="not a JSON object"):
        gateway.find("t")


def test_redirect_is_not_followed(sim: HalonSimulator, gateway: HalonGateway) -> None:
    sim.respond_next(302, {"error": "moved"})
    with pytest.raises(GatewayRejected, match="302"):
        gateway.find("t")
    assert len(sim.requests_log) == 1


# -- health, trace, construction --------------------------------------------------------------


def test_health_lists_an_unknown_id_and_changes_nothing(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = sim.add_message("a@x.example", ["b@y.example"], "hi")
    health = gateway.health()
    assert health.reachable and health.authenticated and "answered empty" in health.detail
    assert [b["command"] for b in sim.api_calls()] == ["F"]
    assert sim.copies(t)[0].quarantine == short(sim)


def test_health_reports_bad_credentials(server: SimulatorServer) -> None:
    settings = wrong_credential(server)
    health = HalonGateway(settings).health()
    assert health.reachable and not health.authenticated
    assert "401" in health.detail and settings.secret not in health.detail


def test_health_fails_when_the_node_ignores_the_id_condition(sim: HalonSimulator, gateway: HalonGateway) -> None:
    sim.respond_next(200, {"items": [{"id": {"transaction": "x", "queue": 1}}]})
    health = gateway.health()
    assert not health.authenticated and "ignores conditions.ids" in health.detail


def test_health_reports_unreachable_without_raising(node: NodeSettings, sim: HalonSimulator) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    health = HalonGateway(NodeSettings(**{**node.__dict__, "api_url": f"http://127.0.0.1:{port}"})).health()
    assert not health.reachable and not health.authenticated
    assert health.detail and secret(sim) not in health.detail


def test_trace_shows_each_request_and_answer_with_secrets_redacted(node: NodeSettings, sim: HalonSimulator) -> None:
    lines: list[str] = []
    t = sim.add_message("a@x.example", ["b@y.example"], "hi")
    with HalonGateway(node, trace=lines.append) as gw:
        gw.find(t)
    text = "\n".join(lines)
    assert "-> POST " + node.api_url + "/api/protobuf" in text and "<- HTTP 200" in text
    assert '"command": "F"' in text and t in text and '"localpart": "b"' in text
    assert secret(sim) not in text and "***" in text


def test_tls_settings_reach_the_session(tmp_path: Any) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    with_ca = HalonGateway(NodeSettings(name="mx1", api_url="https://mx1.example", ca_file=str(ca)))
    assert with_ca._api._session.verify == str(ca)
    insecure = HalonGateway(NodeSettings(name="mx1", api_url="https://mx1.example", verify_tls=False))
    assert insecure._api._session.verify is False
    default = gateway_for(NodeSettings(name="mx2", api_url="https://mx2.example", username="u", password="p"))
    assert default._api._session.verify is True and default._api._session.auth == ("u", "p")


def test_repr_does_not_show_the_secret(node: NodeSettings, sim: HalonSimulator) -> None:
    assert secret(sim) not in repr(HalonGateway(node)) and secret(sim) not in repr(node)
