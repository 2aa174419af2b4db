"""The simulator against Halon's attested shapes (tests/support/halon_shapes.py), over real HTTP:
every attested request is accepted by the generations that have it, every unattested one is
refused naming the field, and answers are proto3 JSON as each generation writes it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from release.devtools.simulator import HalonSimulator, SimulatorServer
from tests.support.halon_shapes import (
    ATTESTED,
    REST_ATTESTED,
    REST_UNATTESTED,
    TXID,
    UNATTESTED,
    RestShape,
    Shape,
    Unattested,
    envelope,
    is_attested,
    rest_attested,
)

KEY = "contract-api-key-0123456789"
USER, PASSWORD = "contract-user", "contract-password-0123"


@pytest.fixture(params=[5, 6], ids=["halon5", "halon6"])
def node(request: pytest.FixtureRequest) -> Iterator[SimulatorServer]:
    sim = HalonSimulator({USER: PASSWORD}, generation=request.param, api_keys=[KEY], auto_deliver=False)
    with SimulatorServer(sim) as server:
        yield server


def post(server: SimulatorServer, body: Any) -> requests.Response:
    if server.sim.generation == 5:
        return requests.post(server.url + "/api/protobuf", json=body, auth=(USER, PASSWORD), timeout=5)
    return requests.post(server.url + "/api/protobuf", json=body, headers={"X-API-Key": KEY}, timeout=5)


def hold(server: SimulatorServer, **kwargs: Any) -> str:
    return server.sim.add_message("anna@partner.example", ["rita@example.org"], "Offer", transaction=TXID, **kwargs)


@pytest.mark.parametrize("shape", ATTESTED, ids=lambda s: s.name)
def test_every_attested_shape_is_accepted_by_its_generations(node: SimulatorServer, shape: Shape) -> None:
    hold(node)
    body = envelope(shape.command, shape.payload, node.sim.generation)
    assert shape.source and is_attested(body, node.sim.generation) == (node.sim.generation in shape.generations)
    response = post(node, body)
    if node.sim.generation not in shape.generations or not shape.simulated:
        assert response.status_code == 400
        assert "not implemented by the simulator" in response.json()["error"] or "cannot find field" in response.text
        return
    assert response.status_code == 200, response.text
    [copy] = node.sim.copies(TXID)
    if shape.command == "F":
        [item] = response.json()["items"]
        assert item["id"]["transaction"] == TXID
    else:
        assert response.json() == {}  # the update's answer fields are unknown: none invented
        change = next(key for key in ("metadata", "move", "action") if key in shape.payload)
        effect = {"metadata": copy.metadata.get("_quarantineid") == "2", "move": copy.state == "active"}
        assert effect.get(change, copy.state == "deleted")


@pytest.mark.parametrize(
    ("bad", "node"),
    [pytest.param(bad, g, id=f"{bad.name}-halon{g}") for bad in UNATTESTED for g in bad.generations],
    indirect=["node"],
)
def test_every_unattested_shape_is_refused_naming_the_field(node: SimulatorServer, bad: Unattested) -> None:
    generation = node.sim.generation
    hold(node)
    body = bad.body
    if generation == 6 and "version" not in body and bad.generations != (6,):
        body = {**body, "version": {"major": 6, "minor": 10}}
    assert not is_attested(body, generation)
    response = post(node, body)
    assert 400 <= response.status_code < 500
    assert bad.field in response.json()["error"]
    [copy] = node.sim.copies(TXID)
    assert (copy.state, copy.quarantine) == ("hold", node.sim.default_quarantine)  # nothing changed


def rest(server: SimulatorServer, method: str, path: str, query: dict[str, str]) -> requests.Response:
    auth = {"auth": (USER, PASSWORD)} if server.sim.generation == 5 else {"headers": {"X-API-Key": KEY}}
    return requests.request(method, server.url + path, params=query, timeout=5, **auth)


@pytest.mark.parametrize("shape", REST_ATTESTED, ids=lambda s: s.name)
def test_every_attested_rest_shape_is_answered_on_5_and_absent_on_6(node: SimulatorServer, shape: RestShape) -> None:
    hold(node)
    [copy] = node.sim.copies(TXID)
    values = {"path": copy.emlpath, "offset": "0", "limit": "10"}
    query = {name: values[name] for name in shape.query}
    assert shape.source and rest_attested(shape.method, shape.path, query) == shape
    response = rest(node, shape.method, shape.path, query)
    if node.sim.generation not in shape.generations:
        assert response.status_code == 404
        return
    assert response.status_code == 200, response.text
    assert set(response.json()) == set(shape.answer)


@pytest.mark.parametrize(("name", "query", "named"), REST_UNATTESTED, ids=[bad[0] for bad in REST_UNATTESTED])
def test_every_unattested_file_read_is_refused_naming_the_parameter(
    name: str, query: dict[str, str], named: str
) -> None:
    sim = HalonSimulator({USER: PASSWORD}, generation=5)
    with SimulatorServer(sim) as server:
        hold(server)
        query = {**query, "path": sim.copies(TXID)[0].emlpath}
        response = rest(server, "GET", "/api/5.3.0/system/files", query)
    assert response.status_code == 400 and named in response.json()["error"], name


def test_is_attested_is_structural() -> None:
    base = envelope("G", {"conditions": {"ids": [{"transaction": "t-1", "queue": "7"}]}, "action": "DELETE"}, 6)
    assert is_attested(base, 6)
    assert not is_attested(base, 5)  # a version envelope on 5.x
    two_ids = envelope(
        "F", {"conditions": {"ids": [{"transaction": "a", "queue": 1}, {"transaction": "b", "queue": 2}]}}, 5
    )
    assert is_attested(two_ids, 5)
    assert not is_attested(
        envelope("G", {"conditions": {"ids": [{"transaction": "a", "queue": 1}]}, "action": "PURGE"}, 5), 5
    )
    assert not is_attested(
        envelope("G", {"conditions": {"ids": [{"transaction": "a", "queue": True}]}, "action": "DELETE"}, 5), 5
    )
    marker = envelope("G", {"conditions": {"ids": [{"transaction": "a", "queue": 1}]}, "metadata": {"qid": "7days"}}, 6)
    assert is_attested(marker, 6)


def test_empty_list_answers_an_empty_object(node: SimulatorServer) -> None:
    body = envelope("F", {"conditions": {"ids": [{"transaction": "no-such-id"}]}}, node.sim.generation)
    response = post(node, body)
    assert response.status_code == 200 and response.json() == {}


def test_items_leave_out_defaults_and_unattested_fields(node: SimulatorServer) -> None:
    node.sim.add_message("postmaster", ["rita@example.org"], "", quarantine=None, transaction=TXID)
    [item] = post(node, envelope("F", {"conditions": {"ids": [{"transaction": TXID}]}}, node.sim.generation)).json()[
        "items"
    ]
    assert item["sender"] == {"localpart": "postmaster"}  # no empty domain
    assert "subject" not in item
    allowed = {"id", "sender", "recipient", "subject", "metadata", "hqfpath"}
    assert set(item) <= allowed
    if node.sim.generation == 5:
        assert "metadata" not in item  # nothing held, no score: an empty map is left out
        assert item["hqfpath"].endswith(f"/{TXID}.hqf")
    else:
        assert "hqfpath" not in item and set(item["metadata"]) == {"received", "senderip"}


def test_queue_ids_are_strings_on_6_and_numbers_on_5(node: SimulatorServer) -> None:
    hold(node, score=12.5)
    [item] = post(node, envelope("F", {"conditions": {"ids": [{"transaction": TXID}]}}, node.sim.generation)).json()[
        "items"
    ]
    if node.sim.generation == 6:
        assert item["id"] == {"transaction": TXID, "queue": "1"}
        assert item["metadata"] == {
            "qid": "1day",
            "received": item["metadata"]["received"],
            "senderip": "192.0.2.10",
            "score": "12.5",
        }
        assert item["metadata"]["received"].isdigit()
    else:
        assert item["id"] == {"transaction": TXID, "queue": 1}
        assert item["metadata"] == {"_quarantineid": "1", "_scores.rpd.score": "12.5"}


def test_update_of_a_copy_no_longer_queued_is_404(node: SimulatorServer) -> None:
    hold(node)
    node.sim.remove(TXID)
    body = envelope(
        "G", {"conditions": {"ids": [{"transaction": TXID, "queue": 1}]}, "action": "DELETE"}, node.sim.generation
    )
    response = post(node, body)
    assert response.status_code == 404 and "error" in response.json()
