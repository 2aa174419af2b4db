"""The simulator's 5.x file API over real HTTP (halon/web-logui inc/eml.php's requests): Basic
auth, strict parameters, each held message's .eml bytes while a copy is queued, and no such
API on 6.x. Also the bytes it keeps: RFC 5322 messages, given raw or built."""

from __future__ import annotations

import base64
import email
import email.policy
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from release.devtools.simulator import FILES_PATH, FILES_SIZE_PATH, HalonSimulator, Ids, SimulatorServer, seed_demo
from tests.support.simulator import PASSWORD, USER

AUTH = (USER, PASSWORD)
KEY = "halon6-api-key-for-tests-0123"
RAW = b"From: a@x.example\r\nSubject: exact bytes\r\n\r\n\x00\xff binary-safe body\r\n"


@pytest.fixture
def server6() -> Iterator[SimulatorServer]:
    with SimulatorServer(HalonSimulator(generation=6, api_keys=[KEY])) as running:
        yield running


def eml(sim: HalonSimulator, transaction: str) -> str:
    return sim.copies(transaction)[0].emlpath


def read(server: SimulatorServer, params: dict[str, Any], auth: Any = AUTH, **kw: Any) -> requests.Response:
    return requests.get(server.url + FILES_PATH, params=params, auth=auth, timeout=5, **kw)


def size(server: SimulatorServer, params: dict[str, Any], auth: Any = AUTH, **kw: Any) -> requests.Response:
    return requests.post(server.url + FILES_SIZE_PATH, params=params, auth=auth, timeout=5, **kw)


def test_reads_a_held_message_in_chunks_as_web_logui_does(server: SimulatorServer, sim: HalonSimulator) -> None:
    t = sim.add_message("a@x.example", ["b@y.example"], "exact", raw=RAW)
    path = eml(sim, t)
    assert path == sim.copies(t)[0].hqfpath.removesuffix("hqf") + "eml"
    got, offset = b"", 0
    while True:
        answer = read(server, {"path": path, "offset": offset, "limit": 16}).json()
        assert set(answer) == {"data", "size", "offset"}
        chunk = base64.b64decode(answer["data"], validate=True)
        assert answer["size"] == len(chunk) and answer["offset"] == offset + len(chunk)
        got, offset = got + chunk, answer["offset"]
        if answer["size"] < 16:
            break
    assert got == RAW
    assert size(server, {"path": path}).json() == {"size": len(RAW)}
    assert [r.username for r in sim.requests_log] == [USER] * len(sim.requests_log)


def test_a_read_past_the_end_is_empty(server: SimulatorServer, sim: HalonSimulator) -> None:
    t = sim.add_message("a@x.example", ["b@y.example"], "exact", raw=RAW)
    answer = read(server, {"path": eml(sim, t), "offset": 10_000, "limit": 5}).json()
    assert answer == {"data": "", "size": 0, "offset": 10_000}


@pytest.mark.parametrize("auth", [None, (USER, "wrong")])
def test_file_reads_need_the_basic_credentials(server: SimulatorServer, sim: HalonSimulator, auth: Any) -> None:
    t = sim.add_message("a@x.example", ["b@y.example"], "hi")
    response = read(server, {"path": eml(sim, t), "offset": 0, "limit": 5}, auth=auth)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Basic")
    assert size(server, {"path": eml(sim, t)}, auth=auth).status_code == 401


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"offset": "0", "limit": "5", "mode": "raw"}, "mode"),
        ({"offset": "0"}, "limit"),
        ({"limit": "5"}, "offset"),
        ({"offset": "-1", "limit": "5"}, "offset"),
        ({"offset": "0", "limit": "0"}, "limit"),
        ({"offset": "0", "limit": "5.0"}, "limit"),
        ({"offset": "0", "limit": str(2**63)}, "limit"),
        ({"offset": ["0", "1"], "limit": "5"}, "offset"),
    ],
)
def test_file_reads_refuse_odd_parameters(
    server: SimulatorServer, sim: HalonSimulator, params: dict[str, Any], named: str
) -> None:
    t = sim.add_message("a@x.example", ["b@y.example"], "hi")
    response = read(server, {"path": eml(sim, t), **params})
    assert response.status_code == 400 and named in response.json()["error"]


def test_files_size_takes_only_a_path_and_no_body(server: SimulatorServer, sim: HalonSimulator) -> None:
    t = sim.add_message("a@x.example", ["b@y.example"], "hi")
    path = eml(sim, t)
    assert size(server, {"path": path, "offset": 0}).status_code == 400
    assert size(server, {}).status_code == 400
    assert size(server, {}, json={"path": path}).status_code == 400  # the path goes in the query
    assert requests.get(server.url + FILES_SIZE_PATH, params={"path": path}, auth=AUTH, timeout=5).status_code == 405
    assert requests.post(server.url + FILES_PATH, params={"path": path}, auth=AUTH, timeout=5).status_code == 405


def test_only_queued_messages_have_a_file(server: SimulatorServer, sim: HalonSimulator) -> None:
    sim.auto_deliver = False
    t = sim.add_message("a@x.example", ["b@y.example", "c@y.example"], "hi")
    path = eml(sim, t)
    other = sim.add_message("a@x.example", ["b@y.example"], "other")
    sim.remove(other)
    assert read(server, {"path": eml(sim, other), "offset": 0, "limit": 5}).status_code == 404
    sim.remove(t, 1)
    assert read(server, {"path": path, "offset": 0, "limit": 5}).status_code == 200  # queue 2 still holds it
    sim.update(Ids([(t, None)]), {}, release=True, delete=False)
    assert read(server, {"path": path, "offset": 0, "limit": 5}).status_code == 200  # active: not yet delivered
    sim.deliver_active()
    response = read(server, {"path": path, "offset": 0, "limit": 5})
    assert response.status_code == 404 and "no such file" in response.json()["error"]
    assert size(server, {"path": path}).status_code == 404


def test_no_other_path_is_served(server: SimulatorServer, sim: HalonSimulator) -> None:
    t = sim.add_message("a@x.example", ["b@y.example"], "hi")
    for path in ("/etc/passwd", eml(sim, t) + "x", f"/var/spool/halon/queue/x/../{t[:2]}/{t}.eml", eml(sim, t)[1:]):
        assert read(server, {"path": path, "offset": 0, "limit": 5}).status_code == 404
    hqf = read(server, {"path": sim.copies(t)[0].hqfpath, "offset": 0, "limit": 73})
    assert hqf.status_code == 400 and "not simulated" in hqf.json()["error"]


def test_halon6_has_no_file_api(server6: SimulatorServer) -> None:
    sim = server6.sim
    t = sim.add_message("a@x.example", ["b@y.example"], "hi")
    assert sim.copies(t)[0].hqfpath == "" and sim.copies(t)[0].raw.startswith(b"From: a@x.example\r\n")
    headers = {"X-API-Key": KEY}
    path = f"/var/spool/halon/queue/{t[:2]}/{t}.eml"
    assert read(server6, {"path": path, "offset": 0, "limit": 5}, auth=None, headers=headers).status_code == 404
    assert size(server6, {"path": path}, auth=None, headers=headers).status_code == 404
    assert sim.file(path) is None


# -- the bytes ----------------------------------------------------------------------------------


def test_raw_bytes_are_kept_exactly(sim: HalonSimulator) -> None:
    t = sim.add_message("a@x.example", ["b@y.example", "c@y.example"], "exact", raw=RAW)
    assert [c.raw for c in sim.copies(t)] == [RAW, RAW] and [c.size for c in sim.copies(t)] == [len(RAW)] * 2
    assert sim.file(eml(sim, t)) == RAW


def test_built_messages_are_rfc_5322(sim: HalonSimulator) -> None:
    t = sim.add_message("anna@partner.example", ["b@y.example", "c@y.example"], "Grüße, wie besprochen", ts=1.7e9)
    raw = sim.copies(t)[0].raw
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\n" not in head.replace(b"\r\n", b"") and head.isascii()  # CRLF only; RFC 2047 subject
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["From"] == "anna@partner.example" and message["To"] == "b@y.example, c@y.example"
    assert message["Subject"] == "Grüße, wie besprochen"
    assert message["Date"].datetime.timestamp() == 1.7e9
    assert message["Message-ID"].endswith("@partner.example>")
    assert "Grüße, wie besprochen" in message.get_content()


def test_odd_form_input_still_builds_a_message(sim: HalonSimulator) -> None:
    t = sim.add_message("<b>x</b> no address", ["victim"], "x" * 998)
    message = email.message_from_bytes(sim.copies(t)[0].raw, policy=email.policy.default)
    assert message["Subject"] == "x" * 998 and "simulator.invalid" in message["Message-ID"]


@pytest.mark.parametrize("generation", [5, 6])
def test_seeded_messages_carry_realistic_bytes(generation: int) -> None:
    sim = HalonSimulator(generation=generation)
    for t in seed_demo(sim):
        copy = sim.copies(t)[0]
        message = email.message_from_bytes(copy.raw, policy=email.policy.default)
        for header in ("From", "To", "Subject", "Date", "Message-ID"):
            assert message[header], (copy.subject, header)
        assert message["Subject"] == copy.subject and copy.sender in message["From"]
        assert message.get_body(("plain",)) is not None and copy.size == len(copy.raw)
    invoice = email.message_from_bytes(sim.copies(seed_demo(sim)[0])[0].raw, policy=email.policy.default)
    assert invoice.get_content_type() == "multipart/mixed"
    assert invoice.get_body(("html",)) is not None and "2024-117" in invoice.get_body(("html",)).get_content()
    [pdf] = invoice.iter_attachments()
    assert pdf.get_content_type() == "application/pdf" and pdf.get_content().rstrip().endswith(b"%%EOF")
