"""POST /gateway/v1/held: a halon6 node in "ndr" mode pushes a held message's signed link
fields; the service queues one report to the sender. The signature is the authentication."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from release.db.models import Job, SenderNotice
from release.devtools.mailcapture import CaptureServer
from release.devtools.simulator import SimulatorServer
from tests.support.held import PUSH_PATH, build_halon6_stack, push, push_body
from tests.support.stack import Stack, close_stack

MESSAGE = "7c1e3d2a-6000-4000-8000-000000000001"


@pytest.fixture
def ndr_stack(database_url: str, simulator: SimulatorServer, smtp_server: CaptureServer) -> Iterator[Stack]:
    built = build_halon6_stack(database_url, simulator, smtp_server)
    yield built
    close_stack(built)


def stored(stack: Stack) -> tuple[list[tuple[str, str, str]], list[tuple[str, int]]]:
    """(node, message, state) of every stored push, and (kind, ref) of every job."""
    with stack.services.db.session() as session:
        notices = session.execute(select(SenderNotice.node, SenderNotice.message_id, SenderNotice.state)).all()
        jobs = session.execute(select(Job.kind, Job.ref_id)).all()
    return [tuple(n) for n in notices], [tuple(j) for j in jobs]  # type: ignore[misc]


def test_a_push_queues_one_report_and_a_repeat_queues_nothing(ndr_stack: Stack) -> None:
    body = push_body(ndr_stack, MESSAGE)
    first = push(ndr_stack.client, body)
    assert first.status_code == 202 and first.get_json() == {"status": "queued"}
    assert first.headers["Cache-Control"] == "no-store"

    # The gateway retries (a timeout on its side), even with a freshly signed link.
    again = push(ndr_stack.client, body)
    later = push(ndr_stack.client, push_body(ndr_stack, MESSAGE, issued_at=body["t"] + 5))
    assert again.status_code == later.status_code == 200
    assert again.get_json() == {"status": "already queued"}

    notices, jobs = stored(ndr_stack)
    assert notices == [("mx1", MESSAGE, "queued")]
    assert [kind for kind, _ in jobs] == ["ndr"]


def test_time_may_come_as_a_decimal_string(ndr_stack: Stack) -> None:
    body = push_body(ndr_stack, MESSAGE)
    assert push(ndr_stack.client, {**body, "t": str(body["t"])}).status_code == 202


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"s": "0" * 64}, 400),  # tampered signature
        ({"m": MESSAGE.replace("1", "2")}, 400),  # another message under this signature
        ({"n": "mx9"}, 400),  # a node this service does not know
    ],
)
def test_a_link_that_does_not_verify_is_refused(ndr_stack: Stack, change: dict[str, str], status: int) -> None:
    response = push(ndr_stack.client, {**push_body(ndr_stack, MESSAGE), **change})
    assert response.status_code == status
    assert response.get_json()["error"] == "bad_request" and response.get_json()["message"]
    assert stored(ndr_stack) == ([], [])


def test_a_link_past_the_short_retention_is_gone(ndr_stack: Stack) -> None:
    old = int(time.time()) - 24 * 3600 - 301  # default short retention 24 h, skew 300 s
    response = push(ndr_stack.client, push_body(ndr_stack, MESSAGE, issued_at=old))
    assert response.status_code == 410 and response.get_json()["error"] == "gone"
    assert stored(ndr_stack) == ([], [])


def test_a_node_that_rejects_with_the_link_may_not_push(ndr_stack: Stack) -> None:
    response = push(ndr_stack.client, push_body(ndr_stack, MESSAGE, node="mx2"))
    assert response.status_code == 403 and response.get_json()["error"] == "forbidden"
    assert "sender_notice" in response.get_json()["message"]
    assert stored(ndr_stack) == ([], [])


def hostile_bodies(good: dict[str, Any]) -> list[Any]:
    return [
        [good],
        "n=mx1",
        None,
        {**good, "extra": 1},
        {k: v for k, v in good.items() if k != "s"},
        {**good, "t": float(good["t"])},
        {**good, "t": True},
        {**good, "t": -1},
        {**good, "t": 10**40},
        {**good, "t": f"0{good['t']}"},
        {**good, "t": None},
        {**good, "n": ["mx1"]},
        {**good, "m": {"$gt": ""}},
        {**good, "m": "x" * 129},
        {**good, "m": MESSAGE + "\n"},
        {**good, "s": good["s"].upper()},
        {**good, "n": "mx1\u0000"},
        {**good, "m": "\ud800"},
    ]


def test_hostile_bodies_get_a_400_never_a_500(ndr_stack: Stack) -> None:
    good = push_body(ndr_stack, MESSAGE)
    for body in hostile_bodies(good):
        response = push(ndr_stack.client, body)
        assert response.status_code == 400, (body, response.status_code, response.text)
        assert response.is_json and response.get_json()["error"] == "bad_request", body
    assert stored(ndr_stack) == ([], [])


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        (b'{"n": "mx1", ', "application/json", 400),  # cut short
        (b"[" * 5000 + b"]" * 5000, "application/json", 400),  # nested too deep to parse
        (b"\xff\xfe{}", "application/json", 400),  # not UTF-8
        (b"n=mx1&m=x&t=1&s=x", "application/x-www-form-urlencoded", 415),
        (b'{"n": "mx1"}', "text/plain", 415),
        (b'{"n": "' + b"x" * 70_000 + b'"}', "application/json", 413),
    ],
)
def test_bodies_that_are_not_json_answer_in_the_api_error_shape(
    ndr_stack: Stack, data: bytes, content_type: str, status: int
) -> None:
    response = ndr_stack.client.post(PUSH_PATH, data=data, content_type=content_type)
    assert response.status_code == status
    assert response.is_json and set(response.get_json()) == {"error", "message"}
    assert stored(ndr_stack) == ([], [])


def test_only_post(ndr_stack: Stack) -> None:
    assert ndr_stack.client.get(PUSH_PATH).status_code == 405
    with ndr_stack.services.db.session() as session:
        assert session.scalar(select(func.count()).select_from(SenderNotice)) == 0
