"""Requesting and carrying out a release (release/core/release.py) with fakes on a real SQLite
database: one job per request, replays after a crash, copies gone from the gateway, races."""

from __future__ import annotations

from datetime import timedelta

import pytest

from release.core.reports import find_report
from release.db.models import Recipient
from release.jobs import queue as jobs
from release.jobs.outcomes import PermanentFailure, RetryLater
from tests.support.fakes import LONG, MSGID, NODE, Crash
from tests.support.flow import (
    Env,
    actions,
    notified_report,
    one,
    queued,
    recipients,
    report_of,
    request,
    requested,
    run,
    settle,
    states,
    submit,
)


def test_request_release_queues_one_job_and_a_repeat_queues_none(env: Env) -> None:
    _, (row,) = notified_report(env, "alice@example.org")
    env.gateway.calls.clear()

    first = request(env, row.id)
    second = request(env, row.id)

    assert first.state == second.state == "release_requested"
    assert one(env, row.id).release_requested_at is not None
    assert queued(env) == [("release", row.id)]
    assert env.gateway.calls == []  # the web side never touches the gateway


def test_request_release_before_the_mail_went_out_does_nothing(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org")
    report_id = submit(env)
    settle(env, "locate")
    (row,) = recipients(env, report_id)

    assert request(env, row.id).state == "notify_pending"
    assert queued(env, "release") == []


def test_request_release_after_the_long_retention_is_expired_without_a_job(env: Env) -> None:
    _, (row,) = notified_report(env, "alice@example.org")
    env.clock.now = row.expires_at + timedelta(seconds=1)

    assert request(env, row.id).state == "expired"
    assert one(env, row.id).state == "expired"
    assert queued(env) == []
    assert env.gateway.count("release") == 0


def test_release_puts_the_copy_back_into_delivery(env: Env) -> None:
    report_id, row = requested(env)

    settle(env)

    released = one(env, row.id)
    assert released.state == "released"
    assert released.released_at is not None and released.release_attempted_at is not None
    assert env.gateway.delivered == [(MSGID, 1)]
    assert env.gateway.count("release") == 1
    assert "released" in actions(env, report_id)


def test_release_run_twice_calls_the_gateway_once(env: Env) -> None:
    _, row = requested(env)
    run(env, "release", row.id)
    run(env, "release", row.id)

    assert one(env, row.id).state == "released"
    assert env.gateway.count("release") == 1


def test_release_of_a_copy_gone_before_any_attempt_is_expired_not_released(env: Env) -> None:
    _, row = requested(env)
    env.gateway.lose(MSGID, 1)

    run(env, "release", row.id)

    assert one(env, row.id).state == "expired"
    assert env.gateway.delivered == []


def test_release_replayed_after_a_crash_between_gateway_success_and_commit_is_released(env: Env) -> None:
    _, row = requested(env)

    def die() -> None:
        raise Crash

    env.gateway.after["release"] = die
    with pytest.raises(Crash):
        run(env, "release", row.id)
    assert env.gateway.delivered == [(MSGID, 1)]  # it went out...
    crashed = one(env, row.id)
    assert crashed.state == "release_requested"  # ...but the database did not learn it
    assert crashed.release_attempted_at is not None
    del env.gateway.after["release"]

    run(env, "release", row.id)

    assert one(env, row.id).state == "released"
    assert env.gateway.delivered == [(MSGID, 1)]


def test_release_of_a_copy_left_in_the_active_queue_counts_as_released(env: Env) -> None:
    _, row = requested(env)
    env.gateway.deliver_on_release = False

    def die() -> None:
        raise Crash

    env.gateway.after["release"] = die
    with pytest.raises(Crash):
        run(env, "release", row.id)
    del env.gateway.after["release"]

    run(env, "release", row.id)

    assert one(env, row.id).state == "released"


def test_release_that_matches_nothing_while_the_copy_is_still_held_is_retried(env: Env) -> None:
    _, row = requested(env)
    env.gateway.release_matches_nothing = True

    with pytest.raises(RetryLater):
        run(env, "release", row.id)
    assert one(env, row.id).state == "release_requested"

    env.gateway.release_matches_nothing = False
    run(env, "release", row.id)
    assert one(env, row.id).state == "released"
    assert env.gateway.delivered == [(MSGID, 1)]


@pytest.mark.parametrize("outage", ["release", "find"])
def test_release_gateway_outage_is_retried(env: Env, outage: str) -> None:
    _, row = requested(env)
    env.gateway.down = {outage}
    if outage == "find":
        env.gateway.release_matches_nothing = True  # so that the flow has to look the copy up

    with pytest.raises(RetryLater):
        run(env, "release", row.id)
    assert one(env, row.id).state == "release_requested"

    env.gateway.down = set()
    env.gateway.release_matches_nothing = False
    run(env, "release", row.id)
    assert one(env, row.id).state == "released"


def test_release_for_a_node_no_longer_configured_is_permanent(env: Env) -> None:
    _, row = requested(env)
    env.ctx.gateways = {}

    with pytest.raises(PermanentFailure):
        run(env, "release", row.id)
    assert one(env, row.id).state == "release_requested"


def test_dead_release_job_fails_the_recipient(env: Env) -> None:
    report_id, row = requested(env)
    with env.db.session() as session:
        env.job_types["release"].on_dead(session, row.id, "PermanentFailure: node gone")
        session.commit()

    assert one(env, row.id).state == "failed"
    assert report_of(env, report_id).state == "notified"  # the report's own state is untouched
    run(env, "release", row.id)
    assert env.gateway.count("release") == 0


def test_request_release_through_the_worker_end_to_end(env: Env) -> None:
    report_id, rows = notified_report(env, "alice@example.org", "bob@example.org")
    request(env, rows[1].id)

    settle(env)

    assert states(env, report_id) == {"alice@example.org": "notified", "bob@example.org": "released"}
    assert env.gateway.delivered == [(MSGID, 2)]
    assert env.gateway.quarantine_of(MSGID, 1) == LONG


def test_two_release_posts_racing_queue_one_release_job(env: Env) -> None:
    """Two POSTs for one link (double click) read 'notified' before either commits.

    Each web request loads the recipient, then calls request_release; on PostgreSQL (READ
    COMMITTED) both see 'notified'. Modelled here by loading both before either acts.
    """
    _, (row,) = notified_report(env, "alice@example.org")
    first = env.db.sessions()
    second = env.db.sessions()
    try:
        a = first.get(Recipient, row.id)
        first.commit()  # SQLite: end the read so the other "request" can run (PG needs no lock)
        b = second.get(Recipient, row.id)
        second.commit()
        assert a is not None and b is not None and a.state == b.state == "notified"

        env.steps.releases.request(first, a)
        env.steps.releases.request(second, b)
    finally:
        first.close()
        second.close()

    assert queued(env, "release") == [("release", row.id)]


def test_a_second_run_of_a_release_cannot_turn_released_into_expired(env: Env) -> None:
    """Two runs of one release (duplicate job, or a lease that ran out mid-call) overlap.

    Run B has committed its attempt and is inside gateway.release when run A releases the copy
    and commits 'released'. B's call then matches nothing, the copy is gone (delivered), and B
    - who never attempted before - concludes 'expired' and overwrites A's 'released'.
    """
    _, row = requested(env)
    calls = 0
    real_release = env.gateway.release

    def release_with_overlap(transaction: str, queue: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:  # run B is inside its gateway call: run A starts and finishes now
            env.gateway.release = real_release  # type: ignore[method-assign]
            run(env, "release", row.id)
        return real_release(transaction, queue)

    env.gateway.release = release_with_overlap  # type: ignore[method-assign]
    run(env, "release", row.id)  # run B

    assert env.gateway.delivered == [(MSGID, 1)]
    assert one(env, row.id).state == "released"


def test_times_read_back_from_sqlite_are_aware_utc(env: Env) -> None:
    _, (row,) = notified_report(env, "alice@example.org")
    request(env, row.id)
    stored = one(env, row.id)
    for value in (stored.expires_at, stored.notified_at, stored.release_requested_at):
        assert value is not None and value.utcoffset() == timedelta(0)
    with env.db.session() as session:
        due = jobs.next_due(session)
        assert due is not None and due.utcoffset() == timedelta(0)
        report = find_report(session, NODE, MSGID)
        assert report is not None and report.link_issued_at.utcoffset() == timedelta(0)


def test_a_definite_release_corrects_an_expired_guess_by_an_overlapping_run(env: Env) -> None:
    _, row = requested(env)

    def other_run_guessed_expired() -> None:  # committed by an overlapping run meanwhile
        with env.db.session() as session:
            other = session.get(Recipient, row.id)
            assert other is not None
            other.state = "expired"
            session.commit()

    env.gateway.after["release"] = other_run_guessed_expired
    run(env, "release", row.id)

    assert env.gateway.delivered == [(MSGID, 1)]
    assert one(env, row.id).state == "released"  # the gateway said it released it


def test_a_refused_release_attempt_does_not_count_as_maybe_released(env: Env) -> None:
    _, recipient = requested(env)
    env.gateway.reject_release = True
    with pytest.raises(RetryLater):
        run(env, "release", recipient.id)
    env.gateway.reject_release = False
    env.gateway.lose(MSGID)  # then the gateway's own retention removes the copy
    run(env, "release", recipient.id)
    assert recipients(env, recipient.report_id)[0].state == "expired"


def test_a_quick_click_while_the_mail_is_being_sent_is_honoured(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org")
    report_id = submit(env)
    settle(env, "locate")
    # The worker stamped notified_at and handed the mail to SMTP, but has not committed
    # "notified" yet when the recipient clicks the link.
    with env.db.session() as session:
        row = session.get(Recipient, recipients(env, report_id)[0].id)
        assert row is not None
        row.notified_at = env.clock()
        session.commit()
    assert request(env, row.id).state == "release_requested"
    assert queued(env, "release") == [("release", row.id)]
