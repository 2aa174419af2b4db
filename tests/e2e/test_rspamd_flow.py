"""The whole flow for an rspamd node, on the service's real parts (web app, SQLite and
PostgreSQL, aiosmtpd for the notification and as the re-injection relay, a controller over
HTTP): push → report link → report → notification → release → re-injected → learned.
(The same with the real Postfix and Rspamd: tests/mta/.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from release.core import admin_actions
from release.core.purge import enforce
from release.db.models import AuditEntry, Job, Recipient, StoredCopy, StoredMessage, utcnow
from release.devtools.mailcapture import CaptureServer, free_port
from release.devtools.simulator import HalonSimulator, SimulatorServer
from release.gateway.stored import message_id_of
from tests.support.rspamd import CONTROLLER_PASSWORD, NODE, Controller, build_rspamd_stack, push, raw_message
from tests.support.stack import Stack, close_stack, drain_due
from tests.support.visitor import csrf_token, release_token_from, report_path, submit_report


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    """Unused by an rspamd node (the stack builder takes one): one, not one per Halon generation."""
    server = SimulatorServer(HalonSimulator({"release": "sim-password-0123"})).start()
    yield server
    server.stop()


@pytest.fixture
def rspamd_stack(
    database_url: str,
    simulator: SimulatorServer,
    smtp_server: CaptureServer,
    relay: CaptureServer,
    rspamd_controller: Controller,
) -> Iterator[Stack]:
    built = build_rspamd_stack(database_url, simulator, smtp_server, relay.port, controller_url=rspamd_controller.url,
                               controller_password=CONTROLLER_PASSWORD)  # fmt: skip
    yield built
    close_stack(built)


def reported(stack: Stack, content: bytes) -> str:
    """Push the message, report it as its sender would, run the worker: the release token of
    the first recipient's notification."""
    assert push(stack.client, content).status_code == 200
    response = submit_report(stack.new_client(), stack, report_path(stack, message_id_of(content), node=NODE))
    assert response.status_code == 303, response.text
    drain_due(stack.worker)
    mails = {m.rcpt_tos[0]: m.message for m in stack.smtp.messages()}
    assert set(mails) == {"alice@example.com", "bob@example.com"}
    return release_token_from(mails["alice@example.com"])


def release(stack: Stack, token: str) -> None:
    client = stack.new_client()
    page = client.get(f"/release/{token}")
    assert page.status_code == 200 and "Invoice 2026-118" in page.text
    assert client.post(f"/release/{token}", data={"csrf_token": csrf_token(page.text)}).status_code == 303


def state_of(stack: Stack, address: str) -> str:
    with stack.services.db.session() as session:
        return session.scalar(select(Recipient.state).where(Recipient.address == address)) or ""


def test_reported_released_reinjected_and_learned(
    rspamd_stack: Stack, relay: CaptureServer, rspamd_controller: Controller
) -> None:
    content = raw_message()
    token = reported(rspamd_stack, content)
    m = message_id_of(content)
    # Found and extended: the copies are now under the long retention.
    assert {c.quarantine for c in rspamd_stack.services.gateways[NODE].find(m)} == {"long"}
    assert relay.messages() == []  # nothing leaves before the recipient asks

    release(rspamd_stack, token)
    drain_due(rspamd_stack.worker)
    assert state_of(rspamd_stack, "alice@example.com") == "released"
    assert state_of(rspamd_stack, "bob@example.com") == "notified"
    [delivered] = relay.messages()
    assert delivered.raw == content and delivered.rcpt_tos == ("alice@example.com",)
    assert delivered.mail_from == "anna@partner.example"
    assert rspamd_controller.learned == [content]  # learn-ham ran as its own job


def test_a_relay_outage_delays_the_release_which_then_arrives_once(
    database_url: str, simulator: SimulatorServer, smtp_server: CaptureServer
) -> None:
    port = free_port()
    stand_in = CaptureServer(port=port).start()  # the relay the node names, up for the setup
    stack = build_rspamd_stack(database_url, simulator, smtp_server, stand_in.port)
    try:
        token = reported(stack, raw_message())
        stand_in.stop()  # the relay goes down
        release(stack, token)
        stack.worker.run_available()
        drain_due(stack.worker, horizon=0)
        assert state_of(stack, "alice@example.com") == "release_requested"  # waiting, not lost
        with CaptureServer(port=port) as relay:
            drain_due(stack.worker)
            assert state_of(stack, "alice@example.com") == "released"
            assert len(relay.messages()) == 1
    finally:
        close_stack(stack)


def test_a_controller_that_refuses_never_undoes_the_release(
    rspamd_stack: Stack, relay: CaptureServer, rspamd_controller: Controller
) -> None:
    rspamd_controller.password = "rotated-on-the-node-0000"  # the service's password is now wrong
    release(rspamd_stack, reported(rspamd_stack, raw_message()))
    drain_due(rspamd_stack.worker)
    assert state_of(rspamd_stack, "alice@example.com") == "released"
    assert len(relay.messages()) == 1 and rspamd_controller.learned == []
    with rspamd_stack.services.db.session() as session:
        assert session.scalar(select(Job.state).where(Job.kind == "learn_ham")) == "dead"
        audit = session.scalars(select(AuditEntry.detail).where(AuditEntry.action == "learn_ham.failed")).all()
    assert audit and "check controller_password" in audit[0]


def test_retention_drops_unreported_copies_and_frees_their_bytes(rspamd_stack: Stack) -> None:
    assert push(rspamd_stack.client, raw_message()).status_code == 200
    services = rspamd_stack.services
    with services.db.session() as session:
        kept = enforce(session, services.gateways, services.settings, utcnow() + timedelta(hours=1))
        assert kept.stored_copies == 0
        swept = enforce(session, services.gateways, services.settings, utcnow() + timedelta(hours=25))
        assert swept.stored_copies == 2 and swept.stored_bytes > 0
        assert session.scalar(select(func.count()).select_from(StoredMessage)) == 0


def test_a_release_cut_off_mid_send_fails_for_an_admin_whose_retry_sends_it(
    rspamd_stack: Stack, relay: CaptureServer
) -> None:
    token = reported(rspamd_stack, raw_message())
    release(rspamd_stack, token)
    with rspamd_stack.services.db.session() as session:  # the service died after marking the copy
        session.execute(update(StoredCopy).where(StoredCopy.recipient == "alice@example.com")
                        .values(release_started_at=utcnow() - timedelta(minutes=10)))  # fmt: skip
        session.commit()
    drain_due(rspamd_stack.worker)
    assert state_of(rspamd_stack, "alice@example.com") == "failed"
    assert relay.messages() == []  # never sent on a guess
    with rspamd_stack.services.db.session() as session:
        error = session.scalar(select(Recipient.error).where(Recipient.address == "alice@example.com"))
        dead = session.scalar(select(Job).where(Job.kind == "release", Job.state == "dead"))
        assert error and "may have taken this copy" in error and dead is not None
        admin_actions.retry_job(session, dead.id, "alice-admin", rspamd_stack.services.job_types)
    drain_due(rspamd_stack.worker)
    assert state_of(rspamd_stack, "alice@example.com") == "released"
    assert len(relay.messages()) == 1
    with rspamd_stack.services.db.session() as session:
        actions = session.scalars(select(AuditEntry.action)).all()
    assert "copy.resend_confirmed" in actions
