"""Notifying recipients (release/core/notify.py) with fakes on a real SQLite database: one mail
per copy, retries keep their Message-ID, refusals fail only their recipient, batches and the
daily cap."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from release.core import notify as notify_module
from release.core.notify import notification_message_id
from release.jobs.outcomes import Deferred, RetryLater
from tests.support.fakes import MSGID, Crash
from tests.support.flow import (
    BATCH_MESSAGES,
    Env,
    located,
    queued,
    recipients,
    report_of,
    run,
    settle,
    states,
    submit,
)


def test_notify_twice_sends_once(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org")
    report_id = submit(env)
    settle(env, "locate")
    ((_, recipient_id),) = queued(env, "notify")

    run(env, "notify", recipient_id)
    run(env, "notify", recipient_id)

    assert len(env.mailer.sent) == 1
    assert states(env, report_id) == {"alice@example.org": "notified"}
    assert report_of(env, report_id).state == "notified"


def test_report_stays_locating_until_the_last_recipient_is_mailed(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org")
    env.gateway.hold(MSGID, 2, "bob@example.org")
    report_id = submit(env)
    settle(env, "locate")
    (first, second) = queued(env, "notify")

    run(env, "notify", first[1])
    assert report_of(env, report_id).state == "locating"
    run(env, "notify", second[1])
    assert report_of(env, report_id).state == "notified"


def test_temporary_smtp_failure_is_retried(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org")
    report_id = submit(env)
    settle(env, "locate")
    ((_, recipient_id),) = queued(env, "notify")
    env.mailer.fail_next(1)

    with pytest.raises(RetryLater):
        run(env, "notify", recipient_id)
    assert states(env, report_id) == {"alice@example.org": "notify_pending"}
    assert report_of(env, report_id).state == "locating"

    run(env, "notify", recipient_id)
    assert states(env, report_id) == {"alice@example.org": "notified"}
    assert len(env.mailer.sent) == 1


def test_permanent_smtp_failure_fails_the_recipient_and_the_report_still_settles(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org")
    env.gateway.hold(MSGID, 2, "bob@example.org")
    report_id = submit(env)
    settle(env, "locate")
    env.mailer.fail_next(1, permanent=True, error="550 no such user")

    settle(env)  # no exception: nothing to retry

    assert states(env, report_id) == {"alice@example.org": "failed", "bob@example.org": "notified"}
    failed = recipients(env, report_id)[0]
    assert failed.error is not None and "550" in failed.error
    assert report_of(env, report_id).state == "notified"
    assert [str(m["To"]) for m in env.mailer.sent] == ["bob@example.org"]


@pytest.mark.parametrize(
    "address",
    [
        "alice@example.org\r\nBcc: victim@example.net",
        "alice@example.org\nX-Injected: 1",
        "not-an-address",
    ],
)
def test_an_address_that_cannot_be_mailed_safely_fails_without_retry(env: Env, address: str) -> None:
    env.gateway.hold(MSGID, 1, address)
    report_id = submit(env)
    settle(env, "locate")
    ((_, recipient_id),) = queued(env, "notify")

    run(env, "notify", recipient_id)  # must not raise: a retry could never succeed

    (row,) = recipients(env, report_id)
    assert row.state == "failed"
    assert row.error is not None and "cannot build the notification" in row.error
    assert env.mailer.sent == []
    assert report_of(env, report_id).state == "failed"  # nobody could be told


def test_dead_notify_job_fails_the_recipient_and_settles_the_report(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org")
    report_id = submit(env)
    settle(env, "locate")
    ((_, recipient_id),) = queued(env, "notify")

    with env.db.session() as session:
        env.job_types["notify"].on_dead(session, recipient_id, "RetryLater: SMTP: 451 try later")
        session.commit()

    (row,) = recipients(env, report_id)
    assert row.state == "failed" and row.error == "RetryLater: SMTP: 451 try later"
    assert report_of(env, report_id).state == "failed"  # nobody could be told
    run(env, "notify", recipient_id)  # a late replay does not mail a failed recipient
    assert env.mailer.sent == []


def test_notify_replayed_after_a_crash_before_settling_still_settles_the_report(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org")
    report_id = submit(env)
    settle(env, "locate")
    ((_, recipient_id),) = queued(env, "notify")

    def die(session: Any, report_ids: Any) -> None:
        raise Crash

    monkeypatch.setattr(notify_module, "settle_reports", die)
    with pytest.raises(Crash):  # the mail went out and "notified" was committed, then the process died
        run(env, "notify", recipient_id)
    monkeypatch.undo()
    assert states(env, report_id) == {"alice@example.org": "notified"}

    run(env, "notify", recipient_id)  # the job is claimed again after its lease

    assert report_of(env, report_id).state == "notified"  # not stuck in "locating"
    assert len(env.mailer.sent) == 1


def test_report_is_notified_when_at_least_one_recipient_was_told(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org")
    env.gateway.hold(MSGID, 2, "bob@example.org\r\nBcc: victim@example.net")
    report_id = submit(env)
    settle(env)
    assert sorted(r.state for r in recipients(env, report_id)) == ["failed", "notified"]
    assert report_of(env, report_id).state == "notified"


def test_a_retried_sending_keeps_its_message_id(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org")
    report_id = submit(env)
    settle(env, "locate")
    (row,) = recipients(env, report_id)
    env.mailer.fail_next(1)  # temporary: the worker will retry
    with pytest.raises(RetryLater):
        run(env, "notify", row.id)
    first_id = notification_message_id(env.ctx.settings.app.public_url, recipients(env, report_id)[0])
    env.clock.now += timedelta(minutes=5)
    run(env, "notify", row.id)
    (sent,) = env.mailer.sent
    assert sent["Message-ID"] == first_id


def test_mails_of_a_batch_are_sent_and_recorded_in_chunks_and_fail_one_by_one(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notify_module, "RECORD_EVERY", 4)
    report_ids = located(env)
    ids = [r.id for report_id in report_ids for r in recipients(env, report_id)]
    env.mailer.fail_next(1, permanent=True)  # alice0: refused for good
    env.mailer.fail_next(1)  # bob0: the server said "try later"
    with env.db.session() as session:
        failures = env.steps.notifier.notify_many(session, ids)

    assert env.mailer.batches == [4, 2]  # recorded after every 4: a crash repeats at most 4 mails
    assert set(failures) == {ids[1]} and isinstance(failures[ids[1]], RetryLater)
    assert states(env, report_ids[0]) == {"alice0@example.org": "failed", "bob0@example.org": "notify_pending"}
    assert report_of(env, report_ids[0]).state == "locating"  # bob0's mail is still to come
    assert [report_of(env, r).state for r in report_ids[1:]] == ["notified", "notified"]


def test_the_daily_cap_counts_the_batch_itself(env: Env) -> None:
    limits = dataclasses.replace(env.ctx.settings.limits, notifications_per_recipient_per_day=1)
    env.ctx.settings = dataclasses.replace(env.ctx.settings, limits=limits)
    for message_id in BATCH_MESSAGES[:2]:
        env.gateway.hold(message_id, 1, "Carol@example.org" if message_id == BATCH_MESSAGES[0] else "carol@example.org")
    report_ids = [submit(env, m, ip=f"198.51.100.{i}") for i, m in enumerate(BATCH_MESSAGES[:2])]
    with env.db.session() as session:
        env.steps.reports.locate_many(session, report_ids)
    ids = [r.id for report_id in report_ids for r in recipients(env, report_id)]
    with env.db.session() as session:
        failures = env.steps.notifier.notify_many(session, ids)

    assert len(env.mailer.sent) == 1  # one mailbox, whatever the case of its address
    assert set(failures) == {ids[1]} and isinstance(failures[ids[1]], Deferred)
