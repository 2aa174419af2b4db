"""HalonGateway.content against the real HTTP simulator: a 5.x node's message read with its file
API exactly as halon/web-logui reads it (tests/support/halon_shapes.py REST_ATTESTED), in
bounded reads; a gone copy is None, 6.x cannot, and every odd answer is an error, never content."""

from __future__ import annotations

import base64
import email
import email.policy
from collections.abc import Iterator
from typing import Any

import pytest

from release.devtools.simulator import FILES_PATH, FILES_SIZE_PATH, PROTOBUF_PATH, HalonSimulator, SimulatorServer
from release.devtools.simulator import seed_demo as seed
from release.gateway import ContentUnavailable, GatewayError, GatewayRejected, HalonGateway
from release.gateway.halon_content import READ_LIMIT
from tests.support.halon_shapes import is_attested, rest_attested
from tests.support.simulator import API_KEY, PASSWORD, USER

MIB = 2**20
RAW = (
    b"From: Anna Berg <anna@partner.example>\r\nTo: rita@example.org\r\nSubject: Offer\r\n"
    b"Date: Tue, 02 Apr 2024 09:30:00 +0000\r\nMessage-ID: <offer-1@partner.example>\r\n\r\n"
    b"Hello Rita,\r\n\r\nour offer is attached.\r\n"
)


@pytest.fixture
def sim() -> HalonSimulator:
    return HalonSimulator({USER: PASSWORD}, generation=5)


@pytest.fixture
def gateway(server: SimulatorServer, sim: HalonSimulator) -> Iterator[HalonGateway]:
    with HalonGateway(server.node_settings("mx1", timeout_seconds=2.0)) as gw:
        yield gw
    # Whatever the test did, every request was one Halon's own clients send (a faulted
    # request's body is not read, so protobuf bodies come from api_calls).
    for body in sim.api_calls():
        assert is_attested(body, 5), body
    for record in sim.requests_log:
        assert record.path == PROTOBUF_PATH or rest_attested(record.method, record.path, record.query), record
        assert record.username == USER


def hold(sim: HalonSimulator, raw: bytes = RAW, recipients: int = 1) -> str:
    rcpts = [f"r{i}@example.org" for i in range(recipients)]
    return sim.add_message("anna@partner.example", rcpts, "Offer", raw=raw)


def eml(sim: HalonSimulator, transaction: str) -> str:
    return sim.copies(transaction)[0].hqfpath.removesuffix(".hqf") + ".eml"


def reads(sim: HalonSimulator) -> list[tuple[str, int, int]]:
    """(path, offset, limit) of each file read the node received."""
    found = [r.query for r in sim.requests_log if r.path == FILES_PATH]
    return [(q["path"], int(q["offset"]), int(q["limit"])) for q in found]


def paths(sim: HalonSimulator) -> list[str]:
    return [r.path for r in sim.requests_log]


def raw_of(size: int) -> bytes:
    head = b"Subject: big\r\n\r\n"
    return head + bytes(i % 251 for i in range(size - len(head)))


def item(transaction: str, **extra: Any) -> dict[str, Any]:
    return {"items": [{"id": {"transaction": transaction, "queue": 1}, **extra}]}


# -- reading ----------------------------------------------------------------------------------


def test_a_message_under_the_limit_comes_whole_in_one_read(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = hold(sim)
    content = gateway.content(t, 1, 64 * 1024)
    assert content is not None and content.data == RAW and content.size == len(RAW) and content.complete
    assert paths(sim) == [PROTOBUF_PATH, FILES_PATH]
    assert reads(sim) == [(eml(sim, t), 0, 64 * 1024)]  # the .eml beside the item's .hqf
    assert sim.api_calls("F")[0]["payload"] == {"conditions": {"ids": [{"transaction": t, "queue": 1}]}}


def test_a_message_larger_than_the_limit_gives_its_start_and_true_size(
    sim: HalonSimulator, gateway: HalonGateway
) -> None:
    raw = raw_of(5000)
    t = hold(sim, raw)
    content = gateway.content(t, 1, 1000)
    assert content is not None and content.data == raw[:1000] and content.size == 5000 and not content.complete
    assert paths(sim) == [PROTOBUF_PATH, FILES_PATH, FILES_SIZE_PATH]
    assert reads(sim) == [(eml(sim, t), 0, 1000)]


def test_a_large_message_is_read_in_bounded_chunks_up_to_the_limit(sim: HalonSimulator, gateway: HalonGateway) -> None:
    raw = raw_of(5 * MIB)
    t = hold(sim, raw)
    limit = 2 * MIB + MIB // 2
    content = gateway.content(t, 1, limit)
    assert content is not None and content.data == raw[:limit] and content.size == len(raw)
    path = eml(sim, t)
    assert reads(sim) == [(path, 0, MIB), (path, MIB, MIB), (path, 2 * MIB, MIB // 2)]
    assert len(sim.requests_log) == 1 + 3 + 1  # list, three reads, the size: never the rest of the file
    assert READ_LIMIT == MIB


def test_a_multi_chunk_message_under_the_limit_ends_at_the_short_read(
    sim: HalonSimulator, gateway: HalonGateway
) -> None:
    raw = raw_of(2 * MIB + 12345)
    t = hold(sim, raw)
    content = gateway.content(t, 1, 8 * MIB)
    assert content is not None and content.data == raw and content.size == len(raw) and content.complete
    assert [offset for _, offset, _ in reads(sim)] == [0, MIB, 2 * MIB]
    assert FILES_SIZE_PATH not in paths(sim)


def test_a_message_of_exactly_one_read_ends_at_an_empty_read(sim: HalonSimulator, gateway: HalonGateway) -> None:
    raw = raw_of(MIB)
    t = hold(sim, raw)
    content = gateway.content(t, 1, 3 * MIB)
    assert content is not None and content.data == raw and content.complete
    assert [(offset, limit) for _, offset, limit in reads(sim)] == [(0, MIB), (MIB, MIB)]


def test_a_message_of_exactly_the_limit_asks_its_size(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = hold(sim)
    content = gateway.content(t, 1, len(RAW))
    assert content is not None and content.data == RAW and content.size == len(RAW) and content.complete
    assert paths(sim) == [PROTOBUF_PATH, FILES_PATH, FILES_SIZE_PATH]


def test_limit_zero_reads_only_the_size(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = hold(sim)
    content = gateway.content(t, 1, 0)
    assert content is not None and content.data == b"" and content.size == len(RAW)
    assert paths(sim) == [PROTOBUF_PATH, FILES_SIZE_PATH]
    with pytest.raises(ValueError):
        gateway.content(t, 1, -1)


def test_each_copy_of_a_transaction_reads_the_same_message(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = hold(sim, recipients=2)
    first, second = gateway.content(t, 1, 4096), gateway.content(t, 2, 4096)
    assert first == second and first is not None and first.data == RAW


def test_the_seeded_invoice_is_a_multipart_mail_with_a_pdf(sim: HalonSimulator, gateway: HalonGateway) -> None:
    invoice = seed(sim)[0]
    content = gateway.content(invoice, 1, 256 * 1024)
    assert content is not None and content.complete
    message = email.message_from_bytes(content.data, policy=email.policy.default)
    assert message["Subject"] == "Invoice 2024-117 for March deliveries"
    assert [p.get_content_type() for p in message.walk()] == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "application/pdf",
    ]
    [pdf] = message.iter_attachments()
    assert pdf.get_content().startswith(b"%PDF-") and pdf.get_filename() == "Invoice-2024-117.pdf"


# -- gone, unavailable ------------------------------------------------------------------------


def test_a_gone_copy_is_none(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = hold(sim, recipients=2)
    sim.remove(t, 1)
    assert gateway.content(t, 1, 1000) is None
    assert gateway.content(t, 3, 1000) is None  # no such recipient
    assert gateway.content("no-such-id", 1, 1000) is None
    assert gateway.content("", 1, 1000) is None
    assert FILES_PATH not in paths(sim)


def test_a_copy_gone_between_list_and_read_is_none(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = hold(sim)
    listed = item(t, hqfpath=sim.copies(t)[0].hqfpath)
    sim.remove(t)  # the node's retention takes it, just after it answered the list
    sim.respond_next(200, listed, path=PROTOBUF_PATH)
    assert gateway.content(t, 1, 1000) is None
    assert paths(sim) == [PROTOBUF_PATH, FILES_PATH, PROTOBUF_PATH]  # 404, then listed again: gone


def test_a_listed_copy_whose_file_is_not_found_is_an_error(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = hold(sim)
    sim.respond_next(404, {"error": "no such file"}, path=FILES_PATH)
    with pytest.raises(GatewayError, match="lists the copy but answers that .*eml is not found"):
        gateway.content(t, 1, 1000)


def test_halon6_cannot_read_content_and_sends_nothing() -> None:
    sim6 = HalonSimulator(generation=6, api_keys=[API_KEY])
    with SimulatorServer(sim6) as server, HalonGateway(server.node_settings("mx6")) as gw:
        t = sim6.add_message("a@x.example", ["b@y.example"], "hi")
        with pytest.raises(ContentUnavailable, match="mx6: Halon 6.x has no known API"):
            gw.content(t, 1, 1000)
    assert sim6.requests_log == []


def test_an_item_without_hqfpath_is_unavailable_naming_it(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = hold(sim)
    sim.respond_next(200, item(t))
    with pytest.raises(ContentUnavailable, match=f"content of {t} queue 1: .*'hqfpath'"):
        gateway.content(t, 1, 1000)


# -- errors -----------------------------------------------------------------------------------


def test_wrong_credentials_are_rejected(server: SimulatorServer, sim: HalonSimulator) -> None:
    t = hold(sim)
    with HalonGateway(server.node_settings("mx1", password="Wrong-Password-123456")) as gw:
        with pytest.raises(GatewayRejected, match="401") as caught:
            gw.content(t, 1, 1000)
    assert "Wrong-Password-123456" not in str(caught.value)


@pytest.mark.parametrize("status", [400, 401, 403])
@pytest.mark.parametrize("path", [FILES_PATH, FILES_SIZE_PATH])
def test_a_refused_read_is_rejected_with_the_secret_redacted(
    sim: HalonSimulator, gateway: HalonGateway, status: int, path: str
) -> None:
    t = hold(sim, raw_of(5000))
    sim.respond_next(status, {"error": f"user release-api:{PASSWORD} may not read files"}, path=path)
    with pytest.raises(GatewayRejected, match=str(status)) as caught:
        gateway.content(t, 1, 1000)
    assert PASSWORD not in str(caught.value) and "may not read files" in str(caught.value)


@pytest.mark.parametrize("status", [500, 502, 503, 429])
@pytest.mark.parametrize("path", [FILES_PATH, FILES_SIZE_PATH])
def test_a_failed_read_is_retryable(sim: HalonSimulator, gateway: HalonGateway, status: int, path: str) -> None:
    t = hold(sim, raw_of(5000))
    sim.respond_next(status, {"error": "busy"}, path=path)
    with pytest.raises(GatewayError, match=str(status)) as caught:
        gateway.content(t, 1, 1000)
    assert not isinstance(caught.value, GatewayRejected)


def test_a_read_timing_out_is_retryable(server: SimulatorServer, sim: HalonSimulator) -> None:
    t = hold(sim)
    sim.timeout_next(1, seconds=5, path=FILES_PATH)
    with HalonGateway(server.node_settings("mx1", timeout_seconds=0.3)) as gw:
        with pytest.raises(GatewayError, match="no answer within 0.3s") as caught:
            gw.content(t, 1, 1000)
    assert not isinstance(caught.value, GatewayRejected)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# Answers to the first read of 100 bytes (at offset 0) of RAW.
HOSTILE_READS = {
    "bad base64": {"data": "not*base64!", "size": 8, "offset": 8},
    "base64 with a line break": {"data": b64(RAW[:60])[:40] + "\n" + b64(RAW[:60])[40:], "size": 60, "offset": 60},
    "data not a string": {"data": ["QQ=="], "size": 1, "offset": 1},
    "no data": {"size": 0, "offset": 0},
    "offset echoed": {"data": b64(RAW[:100]), "size": 100, "offset": 0},
    "offset past the chunk": {"data": b64(RAW[:100]), "size": 100, "offset": 101},
    "no offset": {"data": b64(RAW[:100]), "size": 100},
    "chunk longer than asked": {"data": b64(RAW[:101]), "size": 101, "offset": 101},
    "size negative": {"data": b64(RAW[:10]), "size": -10, "offset": -10},
    "size not a number": {"data": b64(RAW[:10]), "size": "ten", "offset": 10},
    "no size": {"data": b64(RAW[:10]), "offset": 10},
    "size not the data's length": {"data": b64(RAW[:10]), "size": 100, "offset": 100},
    "another file's bytes, shorter": {"data": b64(b"root:x:0:0"), "size": 10, "offset": 11},
}


@pytest.mark.parametrize("answer", HOSTILE_READS.values(), ids=HOSTILE_READS.keys())
def test_a_hostile_read_answer_is_an_error_never_content(
    sim: HalonSimulator, gateway: HalonGateway, answer: dict[str, Any]
) -> None:
    t = hold(sim)
    sim.respond_next(200, answer, path=FILES_PATH)
    with pytest.raises(GatewayError) as caught:
        gateway.content(t, 1, 100)
    assert f"content of {t} queue 1" in str(caught.value)


@pytest.mark.parametrize("size", [-1, 999, "lots", None])
def test_a_hostile_size_answer_is_an_error(sim: HalonSimulator, gateway: HalonGateway, size: Any) -> None:
    t = hold(sim, raw_of(5000))
    sim.respond_next(200, {"size": size}, path=FILES_SIZE_PATH)
    with pytest.raises(GatewayError, match="files:size answered"):
        gateway.content(t, 1, 1000)


def test_a_read_answer_larger_than_asked_for_is_cut_off(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = hold(sim)
    flood = b64(b"x" * 64 * 1024)
    sim.respond_next(200, {"data": flood, "size": 64 * 1024, "offset": 64 * 1024}, path=FILES_PATH)
    with pytest.raises(GatewayError, match="larger than"):
        gateway.content(t, 1, 100)


HOSTILE_PATHS = [
    "/var/spool/halon/queue/../../../etc/shadow.hqf",
    "/var/spool/halon/queue/ab/..hqf",
    "var/spool/halon/queue/ab/t.hqf",
    "/var/spool/halon/queue/ab/t.eml",
    "/var/spool/halon/queue/ab/t",
    "/var/spool/halon/queue/ab/t.hqf\n",
    "/var/spool/halon/queue/ab/t\x00.hqf",
    "\\\\server\\share\\t.hqf",
    "/" + "a" * 2000 + ".hqf",
    42,
    {"path": "/t.hqf"},
]


@pytest.mark.parametrize("hqfpath", HOSTILE_PATHS, ids=[repr(p)[:30] for p in HOSTILE_PATHS])
def test_a_hostile_hqfpath_never_steers_a_read(sim: HalonSimulator, gateway: HalonGateway, hqfpath: Any) -> None:
    t = hold(sim)
    sim.respond_next(200, item(t, hqfpath=hqfpath))
    with pytest.raises(GatewayError, match="refusing 'hqfpath'"):
        gateway.content(t, 1, 1000)
    assert paths(sim) == [PROTOBUF_PATH]


def test_two_items_for_one_copy_are_an_error(sim: HalonSimulator, gateway: HalonGateway) -> None:
    t = hold(sim)
    one = item(t, hqfpath="/var/spool/halon/queue/a.hqf")["items"][0]
    sim.respond_next(200, {"items": [one, {**one, "hqfpath": "/var/spool/halon/queue/b.hqf"}]})
    with pytest.raises(GatewayError, match="2 items for one copy"):
        gateway.content(t, 1, 1000)


# -- trace ------------------------------------------------------------------------------------


def test_trace_shows_file_reads_briefly_and_without_the_secret(server: SimulatorServer, sim: HalonSimulator) -> None:
    t = hold(sim, raw_of(5000))
    lines: list[str] = []
    with HalonGateway(server.node_settings("mx1"), trace=lines.append) as gw:
        gw.content(t, 1, 3000)
    text = "\n".join(lines)
    assert f"-> GET {server.url}{FILES_PATH}?path=%2Fvar%2Fspool%2Fhalon%2Fqueue%2F" in text
    assert "&offset=0&limit=3000" in text and f"-> POST {server.url}{FILES_SIZE_PATH}?path=" in text
    assert "(4000 characters)" in text and '"size": 5000' in text  # the base64 of 3000 bytes, cut short
    assert PASSWORD not in text and "Basic ***" in text
