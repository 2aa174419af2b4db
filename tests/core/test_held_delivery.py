"""The sender's report over real parts: the web push, the worker, real SMTP at an aiosmtpd
capture. The halon6 adapter is being rewritten beside this work, so the node's copies come
from a FakeGateway here; tests/web/test_held_halon6_flow.py runs it on the simulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from release.db.models import Job, SenderNotice
from release.devtools.mailcapture import CaptureServer, free_port
from release.devtools.simulator import SimulatorServer
from tests.support.fakes import FakeGateway
from tests.support.held import build_halon6_stack, push, push_body, report_path_in
from tests.support.stack import Stack, close_stack, drain_due

MESSAGE = "7c1e3d2a-6000-4000-8000-000000000002"


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def smtp(smtp_port: int) -> Iterator[CaptureServer]:
    """A capture server on a fixed port, so a test can take it down and bring it back."""
    server = CaptureServer(port=smtp_port).start()
    yield server
    server.stop()


@pytest.fixture
def ndr_stack(
    database_url: str, simulator: SimulatorServer, smtp: CaptureServer
) -> Iterator[tuple[Stack, FakeGateway]]:
    stack = build_halon6_stack(database_url, simulator, smtp)
    gateway = FakeGateway("mx1")
    # The context shares this dict with the services: the worker now asks the fake node.
    stack.services.gateways["mx1"] = gateway
    gateway.hold(MESSAGE, 1, "alice@example.com", quarantine="qid=1day")
    gateway.hold(MESSAGE, 2, "bob@example.com", quarantine="qid=1day")
    yield stack, gateway
    close_stack(stack)


def test_the_report_arrives_from_the_null_sender_and_its_link_opens_the_report_page(
    ndr_stack: tuple[Stack, FakeGateway],
) -> None:
    stack, _gateway = ndr_stack
    assert push(stack.client, push_body(stack, MESSAGE)).status_code == 202
    drain_due(stack.worker)

    (captured,) = stack.smtp.messages()
    assert captured.mail_from == "<>"  # MAIL FROM:<> as aiosmtpd records it (RFC 3464, RFC 5321 4.5.5)
    assert captured.rcpt_tos == ("offers@spammy.example",)
    mail = captured.message
    assert mail.get_content_type() == "multipart/report" and mail.get_param("report-type") == "delivery-status"
    assert [p.get_content_type() for p in mail.iter_parts()] == ["text/plain", "message/delivery-status"]
    assert str(mail["Subject"]) == "Undelivered mail: Invoice 42 from www[.]example[.]com"
    status = list(mail.iter_parts())[1].get_payload()
    assert str(status[0]["Reporting-MTA"]) == "dns; release.example.test"
    assert [(str(b["Final-Recipient"]), str(b["Status"]), str(b["Action"])) for b in status[1:]] == [
        ("rfc822; alice@example.com", "5.7.1", "failed"),
        ("rfc822; bob@example.com", "5.7.1", "failed"),
    ]

    page = stack.new_client().get(report_path_in(mail))
    assert page.status_code == 200 and 'name="comment"' in page.text


def test_an_smtp_outage_delays_the_report_and_it_arrives_once(
    ndr_stack: tuple[Stack, FakeGateway], smtp_port: int
) -> None:
    stack, _gateway = ndr_stack
    stack.smtp.stop()
    assert push(stack.client, push_body(stack, MESSAGE)).status_code == 202
    drain_due(stack.worker, horizon=0)  # one attempt or two, each refused at connect
    with stack.services.db.session() as session:
        job = session.scalars(select(Job)).one()
        assert job.state == "queued" and job.attempts >= 1 and "SMTP" in (job.last_error or "")
        assert session.scalars(select(SenderNotice.state)).one() == "queued"

    back = CaptureServer(port=smtp_port).start()
    try:
        drain_due(stack.worker)
        assert len(back.messages()) == 1 and back.messages()[0].mail_from == "<>"
    finally:
        back.stop()
