"""The Halon simulator over real HTTP: what it rejects, its state model, faults and pages."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from release.devtools.simulator import HalonSimulator, SimulatorServer, seed_demo
from tests.support.simulator import PASSWORD, USER

AUTH = (USER, PASSWORD)
KEY = "halon6-api-key-for-tests-0123"


@pytest.fixture
def server6() -> Iterator[SimulatorServer]:
    with SimulatorServer(HalonSimulator(generation=6, api_keys=[KEY], minor=9)) as running:
        yield running


def call(server: SimulatorServer, body: Any, auth: Any = AUTH, **kwargs: Any) -> requests.Response:
    if server.sim.generation == 6 and auth is AUTH:
        auth, kwargs = None, {"headers": {"X-API-Key": KEY}, **kwargs}
    return requests.post(server.url + "/api/protobuf", json=body, auth=auth, timeout=5, **kwargs)


def v6(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "version": {"major": 6, "minor": 9}}


def update(transaction: str, queue: Any, **change: Any) -> dict[str, Any]:
    ids = [{"transaction": transaction, "queue": queue}]
    return {"command": "G", "program": "smtpd", "payload": {"conditions": {"ids": ids}, **change}}


def listing(transaction: str) -> dict[str, Any]:
    return {"command": "F", "program": "smtpd", "payload": {"conditions": {"ids": [{"transaction": transaction}]}}}


# -- rejections -------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", [None, (USER, "wrong"), ("nobody", PASSWORD)])
def test_rejects_missing_or_wrong_credentials(server: SimulatorServer, sim: HalonSimulator, auth: Any) -> None:
    t = sim.add_message("a@x.example", ["b@y.example"], "hi")
    response = call(server, update(t, 1, action="DELETE"), auth=auth)
    assert response.status_code == 401
    assert "error" in response.json()
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert sim.copies(t)[0].state == "hold"  # nothing happened


@pytest.mark.parametrize(
    ("headers", "auth"),
    [({}, None), ({"X-API-Key": "wrong"}, None), ({}, (USER, PASSWORD)), ({"Authorization": f"Bearer {KEY}"}, None)],
    ids=["none", "wrong-key", "basic", "bearer"],
)
def test_halon6_accepts_only_its_api_key(server6: SimulatorServer, headers: dict[str, str], auth: Any) -> None:
    t = server6.sim.add_message("a@x.example", ["b@y.example"], "hi")
    response = call(server6, v6(update(t, 1, action="DELETE")), auth=auth, headers=headers)
    assert response.status_code == 401 and "X-API-Key" in response.json()["error"]
    assert "WWW-Authenticate" not in response.headers
    assert server6.sim.copies(t)[0].state == "hold"
    assert call(server6, v6(update(t, 1, action="DELETE")), auth=None, headers={"X-API-Key": KEY}).status_code == 200
    assert server6.sim.copies(t)[0].state == "deleted"


def test_an_api_key_does_not_open_a_halon5_node(server: SimulatorServer, sim: HalonSimulator) -> None:
    t = sim.add_message("a@x.example", ["b@y.example"], "hi")
    assert call(server, update(t, 1, action="DELETE"), auth=None, headers={"X-API-Key": KEY}).status_code == 401


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"command": "Z", "program": "smtpd", "payload": {}}, "unknown command"),
        ({"command": "J", "program": "smtpd", "payload": {}}, "does not implement"),
        ({"command": "F", "program": "other", "payload": {}}, "unknown program"),
        ({"command": "F", "program": "smtpd"}, "payload: required"),
        ({"command": "F", "program": "smtpd", "payload": []}, "payload: expected an object"),
        ({"command": "F", "program": "smtpd", "payload": {}}, "payload.conditions.ids"),
        ({"command": "G", "program": "smtpd", "payload": {"conditions": {"ids": []}, "action": "DELETE"}}, "ids"),
        ({"command": "G", "program": "smtpd", "payload": {"conditions": {}, "action": "DELETE"}}, "ids"),
        ({"command": "G", "program": "smtpd", "payload": {"conditions": {"ids": [{}]}, "action": "DELETE"}}, "ids[0]"),
        (
            {"command": "G", "program": "smtpd", "payload": {"conditions": {"ids": [{"transaction": "t"}]}}},
            "exactly one",
        ),
        (update("t", 1, action="PURGE"), "payload.action: invalid enum value"),
        (update("t", 1, move={"queue": 5}), "payload.move.queue"),
        (update("t", 1, move={}), "exactly one"),
        (update("t", 1, metadata={}), "exactly one"),
        (update("t", 1.5, action="DELETE"), "ids[0].queue: expected an integer"),
        (update("t", -1, action="DELETE"), "ids[0].queue: must not be negative"),
        (update("t", True, action="DELETE"), "ids[0].queue: expected an integer"),
        ([1, 2], "request: expected an object"),
    ],
)
def test_rejects_bad_requests(server: SimulatorServer, sim: HalonSimulator, body: Any, reason: str) -> None:
    sim.add_message("a@x.example", ["b@y.example"], "hi", transaction="t")
    response = call(server, body)
    assert response.status_code == 400
    assert reason in response.json()["error"]
    assert sim.copies("t")[0].state == "hold"


def test_rejects_malformed_json_and_wrong_content_type(server: SimulatorServer) -> None:
    url = server.url + "/api/protobuf"
    bad = requests.post(url, data=b"{not json", auth=AUTH, timeout=5, headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"] == "malformed JSON"
    form = requests.post(url, data={"command": "F"}, auth=AUTH, timeout=5)
    assert form.status_code == 415


def test_unknown_path_is_plain_404(server: SimulatorServer) -> None:
    response = requests.post(server.url + "/api/other", json={}, auth=AUTH, timeout=5)
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/plain")


def test_license_on_5_needs_auth_and_does_not_exist_on_6(server: SimulatorServer, server6: SimulatorServer) -> None:
    assert requests.get(server.url + "/api/5.3.0/license", timeout=5).status_code == 401
    response = requests.get(server.url + "/api/5.3.0/license", auth=AUTH, timeout=5)
    assert response.status_code == 200 and response.json()["serial"]
    gone = requests.get(server6.url + "/api/5.3.0/license", headers={"X-API-Key": KEY}, timeout=5)
    assert gone.status_code == 404


# -- state model ------------------------------------------------------------------------------


def test_list_returns_items_in_halon5_shape(server: SimulatorServer, sim: HalonSimulator) -> None:
    t = sim.add_message("alice@a.example", ["bob@b.example"], "Hello", ts=1_700_000_000.0, score=42.0)
    body = call(server, listing(t)).json()
    [item] = body["items"]
    assert set(body) == {"items"}
    assert item["id"] == {"transaction": t, "queue": 1}
    assert item["sender"] == {"localpart": "alice", "domain": "a.example"}
    assert item["recipient"] == {"localpart": "bob", "domain": "b.example"}
    assert item["metadata"] == {"_quarantineid": "1", "_scores.rpd.score": "42.0"}
    assert item["hqfpath"] == f"/var/spool/halon/queue/{t[:2]}/{t}.hqf"
    assert set(item) == {"id", "sender", "recipient", "subject", "metadata", "hqfpath"}


def test_halon6_keeps_report_data_and_marker_in_metadata(server6: SimulatorServer) -> None:
    sim = server6.sim
    t = sim.add_message(
        "alice@a.example", ["bob@b.example"], "Hello", ts=1_700_000_000.9, score=90.0, sender_ip="203.0.113.7"
    )
    [item] = call(server6, v6(listing(t))).json()["items"]
    assert item["id"] == {"transaction": t, "queue": "1"}
    assert item["metadata"] == {"qid": "1day", "received": "1700000000", "senderip": "203.0.113.7", "score": "90"}
    assert sim.copies(t)[0].quarantine == "qid=1day"
    assert call(server6, v6(update(t, 1, metadata={"qid": "7days"}))).json() == {}
    [copy] = sim.copies(t)
    assert copy.quarantine == "qid=7days" and copy.metadata["senderip"] == "203.0.113.7"  # merged, not replaced


def test_add_message_refuses_the_other_generations_quarantine(sim: HalonSimulator) -> None:
    with pytest.raises(ValueError, match="mailquarantine"):
        sim.add_message("a@x.example", ["b@y.example"], "hi", quarantine="qid=1day")
    sim6 = HalonSimulator(generation=6, marker_key="hold")
    assert sim6.copies(sim6.add_message("a@x.example", ["b@y.example"], "hi"))[0].quarantine == "hold=1day"
    with pytest.raises(ValueError, match="marker"):
        sim6.add_message("a@x.example", ["b@y.example"], "hi", quarantine="qid=1day")
    with pytest.raises(ValueError, match="marker"):
        sim6.add_message("a@x.example", ["b@y.example"], "hi", quarantine="mailquarantine:1")


def test_update_on_ids_no_longer_queued_is_404(server: SimulatorServer, sim: HalonSimulator) -> None:
    t = sim.add_message("a@x.example", ["b@y.example"], "hi")
    for body in (update("no-such-transaction", 1, action="DELETE"), update(t, 9, action="DELETE")):
        response = call(server, body)
        assert response.status_code == 404 and "error" in response.json()
    assert sim.copies(t)[0].state == "hold"


def test_release_without_auto_delivery_stays_active_until_delivered(server: SimulatorServer) -> None:
    sim = server.sim
    sim.auto_deliver = False
    t = sim.add_message("a@x.example", ["b@y.example", "c@y.example"], "hi")
    assert call(server, update(t, 1, move={"queue": "ACTIVE"})).json() == {}
    assert [i.recipient for i in sim.active()] == ["b@y.example"]
    assert [c.quarantine for c in sim.copies(t)] == [None, "mailquarantine:1"]
    items = call(server, listing(t)).json()["items"]
    assert [i["id"]["queue"] for i in items] == [1, 2]  # still queued, and no hold flag in answers
    assert all("hold" not in i for i in items)
    assert sim.deliver_active() == 1
    assert [i["id"]["queue"] for i in call(server, listing(t)).json()["items"]] == [2]
    assert [i.recipient for i in sim.delivered()] == ["b@y.example"]


@pytest.mark.parametrize("action", ["DELETE", "BOUNCE"])
def test_remark_then_delete(server: SimulatorServer, sim: HalonSimulator, action: str) -> None:
    t = sim.add_message("a@x.example", ["b@y.example"], "hi")
    assert call(server, update(t, 1, metadata={"_quarantineid": "2"})).status_code == 200
    assert sim.copies(t)[0].quarantine == "mailquarantine:2"
    assert call(server, update(t, "1", action=action)).status_code == 200  # int64 as a string
    assert sim.copies(t)[0].state == "deleted"
    assert call(server, listing(t)).json() == {}
    assert call(server, update(t, 1, action="DELETE")).status_code == 404


def test_queue_zero_is_unset_and_matches_every_copy(server: SimulatorServer, sim: HalonSimulator) -> None:
    t = sim.add_message("a@x.example", ["b@y.example", "c@y.example"], "hi")
    assert call(server, update(t, 0, metadata={"_quarantineid": "2"})).status_code == 200
    assert [c.quarantine for c in sim.copies(t)] == ["mailquarantine:2"] * 2


def test_remove_simulates_halon_cleanup(server: SimulatorServer, sim: HalonSimulator) -> None:
    t = sim.add_message("a@x.example", ["b@y.example", "c@y.example"], "hi")
    assert sim.remove(t, 2) == 1
    assert [i["id"]["queue"] for i in call(server, listing(t)).json()["items"]] == [1]
    assert [c.state for c in sim.copies(t)] == ["hold", "expired"]


def test_snapshots_do_not_change_the_store(sim: HalonSimulator) -> None:
    t = sim.add_message("a@x.example", ["b@y.example"], "hi")
    sim.copies(t)[0].metadata["_quarantineid"] = "9"
    assert sim.copies(t)[0].quarantine == "mailquarantine:1"


def test_concurrent_updates_are_all_applied(server: SimulatorServer, sim: HalonSimulator) -> None:
    t = sim.add_message("a@x.example", [f"r{i}@y.example" for i in range(20)], "hi")
    results: list[int] = []

    def release(queue: int) -> None:
        results.append(call(server, update(t, queue, move={"queue": 0})).status_code)

    threads = [threading.Thread(target=release, args=(q,)) for q in range(1, 21)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 20
    assert len(sim.delivered()) == 20


# -- faults and the request log ---------------------------------------------------------------


def test_fail_next_applies_to_exactly_n_requests(server: SimulatorServer, sim: HalonSimulator) -> None:
    sim.fail_next(2, status=503)
    statuses = [call(server, listing("t")).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert [r.status for r in sim.requests_log] == statuses


def test_latency_and_timeouts_delay_answers(server: SimulatorServer, sim: HalonSimulator) -> None:
    sim.set_latency(0.2)
    started = time.perf_counter()
    call(server, listing("t"))
    assert time.perf_counter() - started >= 0.2
    sim.set_latency(0)
    sim.timeout_next(1, seconds=5)
    with pytest.raises(requests.Timeout):
        requests.post(server.url + "/api/protobuf", json=listing("t"), auth=AUTH, timeout=0.3)


def test_requests_log_records_auth_and_body(server: SimulatorServer, sim: HalonSimulator) -> None:
    call(server, listing("t"), auth=("intruder", "x"))
    call(server, listing("t"))
    call(server, listing("t"), auth=None, headers={"X-API-Key": KEY})
    assert [(r.username, r.api_key_sent, r.authorized, r.status) for r in sim.requests_log] == [
        ("intruder", False, False, 401),
        (USER, False, True, 200),
        (None, True, False, 401),
    ]
    assert sim.requests_log[1].command == "F"
    assert sim.api_calls("F") == [listing("t")]


# -- overview page, demo seed, server ---------------------------------------------------------


def test_overview_page_escapes_and_shows_states(server: SimulatorServer, sim: HalonSimulator) -> None:
    sim.auto_deliver = False
    evil = sim.add_message("<b>x</b>@x.example", ["victim@y.example"], "<script>alert(1)</script>")
    held = sim.add_message("a@x.example", ["b@y.example"], "held")
    call(server, update(evil, 1, move={"queue": 0}))
    page = requests.get(server.url + "/", timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text
    assert "<b>x</b>" not in page.text
    assert "active" in page.text and "mailquarantine:1" in page.text and held in page.text


def test_overview_page_shows_halon6_markers(server6: SimulatorServer) -> None:
    t = server6.sim.add_message("a@x.example", ["b@y.example"], "held", quarantine="qid=7days")
    page = requests.get(server6.url + "/", timeout=5).text
    assert t in page and "qid=7days" in page


@pytest.mark.parametrize(("generation", "short"), [(5, "mailquarantine:1"), (6, "qid=1day")])
def test_seed_demo_adds_plausible_messages(generation: int, short: str) -> None:
    sim = HalonSimulator(generation=generation)
    transactions = seed_demo(sim)
    assert len(transactions) == len(set(transactions)) >= 3
    counts = [len(sim.copies(t)) for t in transactions]
    assert 2 in counts
    assert all(c.quarantine == short for t in transactions for c in sim.copies(t))


def test_node_settings_match_the_generation(server: SimulatorServer, server6: SimulatorServer) -> None:
    five = server.node_settings("mx1", timeout_seconds=2.0)
    assert (five.type, five.username, five.password, five.api_key) == ("halon5", USER, PASSWORD, "")
    assert five.api_url == server.url and five.timeout_seconds == 2.0
    six = server6.node_settings()
    assert (six.name, six.type, six.api_key, six.halon_version, six.username) == ("sim", "halon6", KEY, "6.9", "")
    assert (six.short_quarantine, six.long_quarantine) == ("qid=1day", "qid=7days")
    custom = SimulatorServer(HalonSimulator(generation=6, marker_key="rescue"))
    custom.start()
    try:
        assert custom.node_settings().long_quarantine == "rescue=7days"
    finally:
        custom.stop()


def test_server_stops_and_frees_the_port(sim: HalonSimulator) -> None:
    server = SimulatorServer(sim).start()
    url = server.url
    assert requests.get(url + "/", timeout=5).status_code == 200
    server.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/", timeout=2)
    with pytest.raises(RuntimeError):
        _ = server.url
