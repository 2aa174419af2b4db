"""The rspamd node's Gateway: copies the service keeps (SQLite and PostgreSQL), re-injected
through a real SMTP relay (aiosmtpd), never twice; learn-ham over real HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller as SmtpController
from sqlalchemy import func, select, update

from release.config import NodeSettings
from release.db.engine import Database
from release.db.models import StoredCopy, StoredMessage, utcnow
from release.devtools.mailcapture import CaptureServer, free_port
from release.gateway import DeliveryUncertain, GatewayError, GatewayRejected, RspamdGateway
from release.gateway.stored import parse_push, store, sweep
from tests.support.rspamd import (
    CONTROLLER_PASSWORD,
    NODE,
    Controller,
    exporter_headers,
    raw_message,
    rspamd_node_settings,
)


def node_for(port: int, **extra: Any) -> NodeSettings:
    """A short timeout: the slow relay below answers after 1.5 s."""
    return rspamd_node_settings(port, timeout_seconds=1.0, **extra)


@pytest.fixture
def gateway(db: Database, relay: CaptureServer) -> Iterator[RspamdGateway]:
    gw = RspamdGateway(node_for(relay.port), db)
    yield gw
    gw.close()


def pushed(db: Database, content: bytes | None = None, **headers: Any) -> str:
    """Store a message as the push endpoint does; its ``m``."""
    found = exporter_headers(**headers)
    message = parse_push(content or raw_message(), found.get)
    with db.session() as session:
        return store(session, NODE, message, utcnow()).message_id


def test_find_lists_each_recipients_copy_in_the_short_retention(db: Database, gateway: RspamdGateway) -> None:
    m = pushed(db)
    copies = gateway.find(m)
    assert [(c.recipient, c.quarantine, c.sender) for c in copies] == [
        ("alice@example.com", "short", "anna@partner.example"),
        ("bob@example.com", "short", "anna@partner.example"),
    ]
    assert copies[0].spam_score == 15.0 and copies[0].metadata["queue_id"] == "4Qx9Lm2Zb7z9"
    assert copies[0].subject == "Invoice 2026-118" and copies[0].received_at is not None
    assert gateway.find("0" * 32) == []
    assert gateway.find_many([m, "f" * 32]) == {m: copies, "f" * 32: []}


def test_move_extends_held_copies_only(db: Database, gateway: RspamdGateway) -> None:
    m = pushed(db)
    alice, bob = (c.queue for c in gateway.find(m))
    assert gateway.move(m, [alice], "long") == 1
    assert gateway.move(m, [alice], "long") == 1  # repeated: the same answer
    assert {c.recipient: c.quarantine for c in gateway.find(m)} == {
        "alice@example.com": "long",
        "bob@example.com": "short",
    }
    assert gateway.move("0" * 32, [bob], "long") == 0  # not that message's copy
    with pytest.raises(GatewayRejected):
        gateway.move(m, [bob], "mailquarantine:9")


def test_release_reinjects_the_original_bytes_with_the_original_envelope_once(
    db: Database, gateway: RspamdGateway, relay: CaptureServer
) -> None:
    content = raw_message()
    m = pushed(db, content)
    alice = gateway.find(m)[0]
    assert gateway.release(m, alice.queue) == 1
    [delivered] = relay.messages()
    assert delivered.mail_from == "anna@partner.example" and delivered.rcpt_tos == ("alice@example.com",)
    assert delivered.raw == content  # headers and body intact, byte for byte

    # A repeated job (a lease that ran out, a double click) never sends it again.
    assert gateway.release(m, alice.queue) == 1
    assert len(relay.messages()) == 1
    after = {c.recipient: c.quarantine for c in gateway.find(m)}
    assert after == {"alice@example.com": None, "bob@example.com": "short"}
    with db.session() as session:
        row = session.get(StoredCopy, alice.queue)
        assert row is not None and row.relayed_at is not None and (row.relay_reply or "").startswith("250")


def test_the_null_sender_is_reinjected_as_the_null_sender(
    db: Database, gateway: RspamdGateway, relay: CaptureServer
) -> None:
    m = pushed(db, sender="")
    assert gateway.release(m, gateway.find(m)[0].queue) == 1
    assert relay.messages()[0].mail_from == "<>"  # MAIL FROM:<>, as aiosmtpd records it


def test_a_relay_outage_delays_the_release_and_loses_nothing(db: Database) -> None:
    port = free_port()
    gw = RspamdGateway(node_for(port), db)
    try:
        m = pushed(db)
        queue = gw.find(m)[0].queue
        with pytest.raises(GatewayError) as failed:
            gw.release(m, queue)
        assert not isinstance(failed.value, (GatewayRejected, DeliveryUncertain))
        assert "cannot connect" in str(failed.value)
        with CaptureServer(port=port) as relay:  # the relay is back
            assert gw.release(m, queue) == 1
            assert len(relay.messages()) == 1
    finally:
        gw.close()


def test_a_copy_gone_from_the_store_releases_nothing(
    db: Database, gateway: RspamdGateway, relay: CaptureServer
) -> None:
    m = pushed(db)
    queue = gateway.find(m)[0].queue
    assert gateway.delete(m, [queue]) == 1
    assert gateway.release(m, queue) == 0
    assert relay.messages() == []


class _SlowRelay:
    """Takes the message, then answers later than the client waits: the message arrived, and
    the service cannot know it."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(envelope.original_content)
        await asyncio.sleep(1.5)
        return "250 2.0.0 Ok: queued as SLOW1"


def test_an_answer_lost_after_the_message_went_out_is_never_followed_by_a_second_send(db: Database) -> None:
    handler, port = _SlowRelay(), free_port()
    controller = SmtpController(handler, hostname="127.0.0.1", port=port, server_hostname="slow.localhost")
    controller.start()
    gw = RspamdGateway(node_for(port), db)
    try:
        m = pushed(db)
        queue = gw.find(m)[0].queue
        with pytest.raises(DeliveryUncertain) as first:
            gw.release(m, queue)
        assert "may have taken this copy" in str(first.value)
        # A retry of the job (or an admin's) must not send it again: still the one delivery.
        for _ in range(2):
            with pytest.raises((DeliveryUncertain, GatewayError)):
                gw.release(m, queue)
        time.sleep(1.6)
        assert len(handler.received) == 1
    finally:
        gw.close()
        controller.stop()


def test_a_crash_between_the_mark_and_the_answer_leaves_the_copy_unsent_for_good(
    db: Database, gateway: RspamdGateway, relay: CaptureServer
) -> None:
    """The process died after marking the copy and before recording the relay's 250 (whether
    or not the relay got it): no later attempt sends it."""
    m = pushed(db)
    queue = gateway.find(m)[0].queue
    with db.session() as session:
        session.execute(update(StoredCopy).where(StoredCopy.id == queue)
                        .values(release_started_at=utcnow() - timedelta(minutes=5)))  # fmt: skip
        session.commit()
    with pytest.raises(DeliveryUncertain):
        gateway.release(m, queue)
    assert relay.messages() == []


def test_delete_frees_the_bytes_with_the_last_copy(db: Database, gateway: RspamdGateway) -> None:
    m = pushed(db)
    alice, bob = (c.queue for c in gateway.find(m))
    assert gateway.delete(m, [alice]) == 1
    assert gateway.delete(m, [alice]) == 0  # already gone
    assert _messages(db) == 1
    assert gateway.delete(m, [bob]) == 1
    assert _messages(db) == 0 and gateway.find(m) == []


def test_sweep_applies_the_admins_retention_to_stored_copies(db: Database, gateway: RspamdGateway) -> None:
    m = pushed(db)
    alice, bob = (c.queue for c in gateway.find(m))
    gateway.move(m, [alice], "long")
    short, long = timedelta(hours=24), timedelta(days=7)
    with db.session() as session:
        assert sweep(session, short, long, utcnow() + timedelta(hours=23)).copies == 0
        dry = sweep(session, short, long, utcnow() + timedelta(hours=25), dry_run=True)
        assert (dry.copies, dry.messages) == (1, 0)
        done = sweep(session, short, long, utcnow() + timedelta(hours=25))
        assert done.copies == 1 and done.labels == [f"{NODE}/{m}#{bob}"]
    assert [c.queue for c in gateway.find(m)] == [alice]
    with db.session() as session:
        freed = sweep(session, short, long, utcnow() + timedelta(days=7, hours=1))
    assert (freed.copies, freed.messages) == (1, 1) and freed.bytes_freed > 0
    assert _messages(db) == 0


def test_health_says_whether_the_relay_answers(db: Database, gateway: RspamdGateway) -> None:
    health = gateway.health()
    assert health.reachable and "answered NOOP with 250" in health.detail
    down = RspamdGateway(node_for(free_port()), None)
    try:
        assert not down.health().reachable
    finally:
        down.close()


def test_learn_ham_posts_the_message_to_the_controller(db: Database, relay: CaptureServer,
                                                       rspamd_controller: Controller) -> None:  # fmt: skip
    node = node_for(relay.port, controller_url=rspamd_controller.url, controller_password=CONTROLLER_PASSWORD)
    gw = RspamdGateway(node, db)
    try:
        content = raw_message()
        m = pushed(db, content)
        assert gw.learns and gw.check_controller()[0]
        assert gw.learn_ham(m) is True
        assert rspamd_controller.learned == [content]
        rspamd_controller.status = 208  # learned before: fine
        assert gw.learn_ham(m) is True
        assert gw.learn_ham("0" * 32) is False  # nothing kept: nothing to teach
        wrong = RspamdGateway(dataclasses.replace(node, controller_password="wrong-password-0000"), db)
        with pytest.raises(GatewayRejected):
            wrong.learn_ham(m)
        assert not wrong.check_controller()[0]
        wrong.close()
        rspamd_controller.status = 500
        with pytest.raises(GatewayError):
            gw.learn_ham(m)
    finally:
        gw.close()


def _messages(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(StoredMessage)) or 0


def test_find_with_a_queue_lists_only_that_copy(db: Database, gateway: RspamdGateway) -> None:
    """Release asks for one recipient's copy after a release matched nothing: a sibling that
    was released must not make a copy that is gone look released instead of expired."""
    m = pushed(db)
    alice, bob = (c.queue for c in gateway.find(m))
    assert gateway.release(m, alice) == 1
    assert gateway.delete(m, [bob]) == 1
    assert gateway.find(m, bob) == []
    assert [(c.queue, c.quarantine) for c in gateway.find(m, alice)] == [(alice, None)]
