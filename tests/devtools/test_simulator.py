"""The Halon simulator over real HTTP: what it rejects, its state model, faults and pages."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests

from release.devtools.simulator import HalonSimulator, SimulatorServer, seed_demo
from tests.support.simulator import PASSWORD, USER

AUTH = (USER, PASSWORD)


def call(server: SimulatorServer, body: Any, auth: Any = AUTH, **kwargs: Any) -> requests.Response:
    return requests.post(server.url + "/api/protobuf", json=body, auth=auth, timeout=5, **kwargs)


def update(transaction: str, queue: int, **change: Any) -> dict[str, Any]:
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
    ("body", "reason"),
    [
        ({"command": "Z", "program": "smtpd", "payload": {}}, "unknown command"),
        ({"command": "F", "program": "other", "payload": {}}, "unknown program"),
        ({"command": "F", "program": "smtpd", "payload": {}}, "ids"),
        ({"command": "G", "program": "smtpd", "payload": {"conditions": {"ids": []}, "action": "DELETE"}}, "ids"),
        ({"command": "G", "program": "smtpd", "payload": {"conditions": {}, "action": "DELETE"}}, "ids"),
        ({"command": "G", "program": "smtpd", "payload": {"conditions": {"ids": [{}]}, "action": "DELETE"}}, "id"),
        ({"command": "G", "program": "smtpd", "payload": {"conditions": {"ids": [{"transaction": "t"}]}}}, "nothing"),
        (update("t", 1, action="BOUNCE"), "unsupported action"),
        (update("t", 1, task={"actiontype": 1}), "unsupported task"),
        (update("t", 1, move={"queue": 5}), "unsupported move"),
        (update("t", 1, metadata={"_quarantineid": 2}), "metadata"),
        ([1, 2], "object"),
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


def test_license_needs_auth(server: SimulatorServer) -> None:
    assert requests.get(server.url + "/api/5.3.0/license", timeout=5).status_code == 401
    response = requests.get(server.url + "/api/5.3.0/license", auth=AUTH, timeout=5)
    assert response.status_code == 200 and isinstance(response.json(), dict)


# -- state model ------------------------------------------------------------------------------


def test_list_returns_items_in_halon_shape(server: SimulatorServer, sim: HalonSimulator) -> None:
    t = sim.add_message("alice@a.example", ["bob@b.example"], "Hello", ts=1_700_000_000.0, score=42.0)
    body = call(server, listing(t)).json()
    assert body["paging"] == {"total": 1}
    [item] = body["items"]
    assert item["id"] == {"transaction": t, "queue": 1}
    assert item["sender"] == {"localpart": "alice", "domain": "a.example"}
    assert item["recipient"] == {"localpart": "bob", "domain": "b.example"}
    assert item["ts"] == 1_700_000_000.0 and item["hold"] is True
    assert item["metadata"] == {"_quarantineid": "1", "_scores.rpd.score": "42.0"}


def test_update_on_unknown_ids_affects_nothing(server: SimulatorServer, sim: HalonSimulator) -> None:
    t = sim.add_message("a@x.example", ["b@y.example"], "hi")
    assert call(server, update("no-such-transaction", 1, action="DELETE")).json()["affected"] == 0
    assert call(server, update(t, 9, action="DELETE")).json()["affected"] == 0
    assert sim.copies(t)[0].state == "hold"


def test_release_without_auto_delivery_stays_active_until_delivered(server: SimulatorServer) -> None:
    sim = server.sim
    sim.auto_deliver = False
    t = sim.add_message("a@x.example", ["b@y.example", "c@y.example"], "hi")
    assert call(server, update(t, 1, move={"queue": "ACTIVE"})).json()["affected"] == 1
    assert [i.recipient for i in sim.active()] == ["b@y.example"]
    items = call(server, listing(t)).json()["items"]
    assert [(i["id"]["queue"], i["hold"]) for i in items] == [(1, False), (2, True)]
    assert sim.deliver_active() == 1
    assert [i["id"]["queue"] for i in call(server, listing(t)).json()["items"]] == [2]
    assert [i.recipient for i in sim.delivered()] == ["b@y.example"]


def test_move_changes_quarantine_and_delete_removes(server: SimulatorServer, sim: HalonSimulator) -> None:
    t = sim.add_message("a@x.example", ["b@y.example"], "hi")
    assert call(server, update(t, 1, metadata={"_quarantineid": "2"})).json()["affected"] == 1
    assert sim.copies(t)[0].quarantine == "mailquarantine:2"
    assert call(server, update(t, 1, task={"actiontype": 0})).json()["affected"] == 1
    assert sim.copies(t)[0].state == "deleted"
    assert call(server, listing(t)).json()["items"] == []
    assert call(server, update(t, 1, action="DELETE")).json()["affected"] == 0


def test_remove_simulates_halon_cleanup(server: SimulatorServer, sim: HalonSimulator) -> None:
    t = sim.add_message("a@x.example", ["b@y.example", "c@y.example"], "hi")
    assert sim.remove(t, 2) == 1
    assert [i["id"]["queue"] for i in call(server, listing(t)).json()["items"]] == [1]
    assert [c.state for c in sim.copies(t)] == ["hold", "expired"]


def test_paging_with_offset_and_limit(server: SimulatorServer, sim: HalonSimulator) -> None:
    t = sim.add_message("a@x.example", [f"r{i}@y.example" for i in range(5)], "hi")
    body = listing(t)
    body["payload"]["paging"] = {"offset": 3, "limit": 10}
    page = call(server, body).json()
    assert page["paging"]["total"] == 5
    assert [i["id"]["queue"] for i in page["items"]] == [4, 5]


def test_snapshots_do_not_change_the_store(sim: HalonSimulator) -> None:
    t = sim.add_message("a@x.example", ["b@y.example"], "hi")
    sim.copies(t)[0].metadata["_quarantineid"] = "9"
    assert sim.copies(t)[0].quarantine == "mailquarantine:1"


def test_concurrent_updates_are_all_applied(server: SimulatorServer, sim: HalonSimulator) -> None:
    t = sim.add_message("a@x.example", [f"r{i}@y.example" for i in range(20)], "hi")
    results: list[int] = []

    def release(queue: int) -> None:
        results.append(call(server, update(t, queue, move={"queue": 0})).json()["affected"])

    threads = [threading.Thread(target=release, args=(q,)) for q in range(1, 21)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [1] * 20
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
    assert [(r.username, r.authorized, r.status) for r in sim.requests_log] == [
        ("intruder", False, 401),
        (USER, True, 200),
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


def test_seed_demo_adds_plausible_messages(sim: HalonSimulator) -> None:
    transactions = seed_demo(sim)
    assert len(transactions) == len(set(transactions)) >= 3
    counts = [len(sim.copies(t)) for t in transactions]
    assert 2 in counts
    assert all(c.quarantine == "mailquarantine:1" for t in transactions for c in sim.copies(t))


def test_server_stops_and_frees_the_port(sim: HalonSimulator) -> None:
    server = SimulatorServer(sim).start()
    url = server.url
    assert requests.get(url + "/", timeout=5).status_code == 200
    server.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/", timeout=2)
    with pytest.raises(RuntimeError):
        _ = server.url
