"""The "ndr" step: one report mail to the sender of a held message, never to a bounce,
nothing when the copies are gone; outages delay it, never drop or double it."""

from __future__ import annotations

import dataclasses
from typing import cast

import pytest
from sqlalchemy import select

from release.core import links
from release.core.held import accept_push
from release.db.models import AuditEntry, SenderNotice
from release.jobs.outcomes import RetryLater
from release.mail.sending import NullSenderMessage
from tests.support.fakes import LONG, MSGID, NODE
from tests.support.flow import Env, queued, settle

SENDER = "offers@spammy.example"  # what FakeGateway.hold gives every copy


def pushed(env: Env, message_id: str = MSGID) -> int:
    """A verified push from an "ndr" node, stored with its job; returns the notice id."""
    issued = int(env.clock().timestamp())
    link = links.ReportLink(NODE, message_id, issued)
    signature = links.sign(env.ctx.settings.links.keys[0], NODE, message_id, issued)
    with env.db.session() as session:
        assert accept_push(session, link, signature, "ndr") is True
        notice = session.scalar(select(SenderNotice).where(SenderNotice.message_id == message_id))
        assert notice is not None
        return notice.id


def notice(env: Env, notice_id: int) -> SenderNotice:
    with env.db.session() as session:
        row = session.get(SenderNotice, notice_id)
        assert row is not None
        session.expunge(row)
        return row


def test_the_sender_gets_one_report_naming_every_recipient(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org")
    env.gateway.hold(MSGID, 2, "bob@example.org")
    notice_id = pushed(env)
    assert settle(env) == [("ndr", notice_id)]

    (mail,) = env.mailer.sent
    assert isinstance(mail, NullSenderMessage)  # MAIL FROM:<> (checked over SMTP elsewhere)
    assert str(mail["To"]) == SENDER and mail["Auto-Submitted"] == "auto-replied"
    assert mail.get_content_type() == "multipart/report" and mail.get_param("report-type") == "delivery-status"
    text, status = mail.iter_parts()
    words = cast(str, text.get_content())
    assert "not delivered to alice@example.org, bob@example.org" in words
    assert "/report?n=mx1&m=" + MSGID in words
    finals = [str(block["Final-Recipient"]) for block in status.get_payload()[1:]]
    assert finals == ["rfc822; alice@example.org", "rfc822; bob@example.org"]
    # The copies stay where the gateway holds them: only a sender's report moves them.
    assert env.gateway.count("move") == 0
    row = notice(env, notice_id)
    assert row.state == "sent" and row.sent_at is not None and row.recipient_count == 2
    assert row.envelope_sender == SENDER


def test_a_replayed_job_sends_nothing_more(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org")
    notice_id = pushed(env)
    settle(env)
    env.gateway.calls.clear()
    with env.db.session() as session:
        env.job_types["ndr"].run(session, notice_id)  # the worker crashed after our commit
    assert len(env.mailer.sent) == 1 and env.gateway.calls == []


def test_a_bounce_is_never_answered(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org")
    copy = env.gateway.copies[(MSGID, 1)]
    env.gateway.copies[(MSGID, 1)] = dataclasses.replace(copy, sender="")
    notice_id = pushed(env)
    settle(env)
    assert env.mailer.sent == [] and notice(env, notice_id).state == "skipped"


def test_copies_gone_or_not_held_mean_nothing_to_tell(env: Env) -> None:
    env.gateway.hold("other-message", 1, "alice@example.org", quarantine=None)  # delivered, not held
    gone, active = pushed(env), pushed(env, "other-message")
    settle(env)
    assert env.mailer.sent == []
    assert notice(env, gone).state == notice(env, active).state == "not_found"


def test_a_copy_already_in_the_long_quarantine_still_counts(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org", quarantine=LONG)
    notice_id = pushed(env)
    settle(env)
    assert notice(env, notice_id).state == "sent"


def test_a_gateway_outage_is_retried(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org")
    notice_id = pushed(env)
    env.gateway.down.add("find")
    with pytest.raises(RetryLater):
        settle(env)
    assert notice(env, notice_id).state == "queued" and queued(env) == [("ndr", notice_id)]
    env.gateway.down.clear()
    settle(env)
    assert len(env.mailer.sent) == 1 and notice(env, notice_id).state == "sent"


def test_an_smtp_outage_delays_the_report_and_the_retry_repeats_its_message_id(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org")
    notice_id = pushed(env)
    env.mailer.fail_next(2)
    for _ in range(2):
        with pytest.raises(RetryLater):
            settle(env)
    assert env.mailer.sent == [] and notice(env, notice_id).state == "queued"
    settle(env)
    (mail,) = env.mailer.sent
    assert notice(env, notice_id).state == "sent"
    assert str(mail["Message-ID"]).startswith("<ndr-") and str(mail["Message-ID"]).endswith("@release.example.test>")


def test_a_refused_report_is_failed_and_audited(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org")
    notice_id = pushed(env)
    env.mailer.fail_next(permanent=True, error="550 no such user")
    settle(env)
    row = notice(env, notice_id)
    assert row.state == "failed" and "550 no such user" in (row.error or "")
    with env.db.session() as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "ndr.failed"))
    assert entry is not None and entry.target == f"message:{NODE}/{MSGID}"


def test_a_job_that_gave_up_shows_failed_and_an_admins_retry_sends_it(env: Env) -> None:
    notice_id = pushed(env)
    with env.db.session() as session:
        env.job_types["ndr"].on_dead(session, notice_id, "gateway: connection refused")  # type: ignore[misc]
    assert notice(env, notice_id).state == "failed"
    # An admin retries the dead job once the outage is over: the report goes out.
    env.gateway.hold(MSGID, 1, "alice@example.org")
    with env.db.session() as session:
        env.job_types["ndr"].run(session, notice_id)
    assert notice(env, notice_id).state == "sent" and len(env.mailer.sent) == 1


def test_one_row_per_message_however_often_it_is_pushed(env: Env) -> None:
    pushed(env)
    issued = int(env.clock().timestamp()) + 1
    link = links.ReportLink(NODE, MSGID, issued)
    with env.db.session() as session:
        assert (
            accept_push(session, link, links.sign(env.ctx.settings.links.keys[0], NODE, MSGID, issued), "ndr") is False
        )
    assert queued(env) == [("ndr", 1)]
