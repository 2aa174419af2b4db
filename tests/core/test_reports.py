"""Reports (release/core/reports.py) with fakes on a real SQLite database: submitting, locating
the held copies (one by one and in batches), replays after a crash, outages and dead jobs.

Jobs are settled by calling the flow's handlers the way the worker does (tests/support/flow.py),
so each test can stop or crash a step at an exact line and replay it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from release.core import links
from release.core.release import find_recipient_by_token
from release.db.models import Report
from release.jobs.outcomes import PermanentFailure, RetryLater
from tests.support.fakes import COMMENT, LONG, MSGID, SHORT, Crash
from tests.support.flow import (
    BATCH_MESSAGES,
    Env,
    actions,
    located,
    notified_report,
    queued,
    recipients,
    report_of,
    run,
    settle,
    states,
    submit,
)


def test_submit_stores_a_pending_report_and_one_locate_job_without_side_effects(env: Env) -> None:
    report_id = submit(env)

    report = report_of(env, report_id)
    assert report.state == "pending"
    assert report.comment == COMMENT
    assert report.link_issued_at.tzinfo is not None
    assert queued(env) == [("locate", report_id)]
    assert env.gateway.calls == []  # no gateway call from the web side
    assert env.mailer.sent == []


def test_submit_twice_for_one_message_keeps_one_report_and_one_job(env: Env) -> None:
    first = submit(env)
    second = submit(env, ip="203.0.113.9")

    assert first == second
    assert queued(env) == [("locate", first)]
    assert report_of(env, first).sender_ip == "198.51.100.7"


def test_happy_path_locates_extends_and_mails_every_recipient(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org")
    env.gateway.hold(MSGID, 2, "bob@example.org")
    env.gateway.hold("other-message", 1, "carol@example.org")
    report_id = submit(env)

    settle(env, "locate")
    # Located: copies moved to the long quarantine, one row + one notify job per recipient.
    assert report_of(env, report_id).state == "locating"
    assert env.gateway.quarantine_of(MSGID, 1) == LONG
    assert env.gateway.quarantine_of(MSGID, 2) == LONG
    assert env.gateway.quarantine_of("other-message", 1) == SHORT
    assert states(env, report_id) == {"alice@example.org": "notify_pending", "bob@example.org": "notify_pending"}
    rows = recipients(env, report_id)
    assert queued(env) == [("notify", r.id) for r in rows]
    report = report_of(env, report_id)
    assert report.envelope_sender == "offers@spammy.example"
    assert report.subject == "Invoice 42 from www.example.com"
    assert all(r.expires_at > env.clock() + timedelta(days=6) for r in rows)

    settle(env)
    assert report_of(env, report_id).state == "notified"
    assert states(env, report_id) == {"alice@example.org": "notified", "bob@example.org": "notified"}
    assert len(env.mailer.sent) == 2
    for row in rows:
        (mail,) = env.mailer.to(row.address)
        body = mail.as_string()
        assert env.ctx.release_url(row).split("/release/")[1] in body.replace("=\n", "")
        assert "SECRET-COMMENT-MARKER" not in body  # the sender's comment never goes into a mail
    assert "notified" in actions(env, report_id)


def test_release_link_in_the_mail_finds_its_recipient(env: Env) -> None:
    _, (row,) = notified_report(env, "alice@example.org")
    token = env.ctx.release_url(row).rsplit("/", 1)[1]
    assert links.is_token_shaped(token)
    with env.db.session() as session:
        found = find_recipient_by_token(session, token)
        assert found is not None and found.id == row.id
        assert row.token_hash != token and token not in row.token_nonce  # only a hash is stored


def test_nothing_held_means_not_found_without_moves_or_mail(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org", quarantine=None)  # in the active queue, not held
    report_id = submit(env)

    settle(env)

    assert report_of(env, report_id).state == "not_found"
    assert recipients(env, report_id) == []
    assert env.gateway.count("move") == 0
    assert env.mailer.sent == []
    assert queued(env) == []


def test_copies_already_in_the_long_quarantine_are_not_moved_again(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org", quarantine=LONG)
    env.gateway.hold(MSGID, 2, "bob@example.org", quarantine=SHORT)
    report_id = submit(env)

    settle(env, "locate")

    assert [args for op, args in env.gateway.calls if op == "move"] == [(MSGID, (2,), LONG)]
    assert len(recipients(env, report_id)) == 2


def test_locate_twice_creates_no_duplicates_and_moves_once(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org")
    env.gateway.hold(MSGID, 2, "bob@example.org")
    report_id = submit(env)
    run(env, "locate", report_id)
    jobs_before = queued(env)

    run(env, "locate", report_id)  # e.g. the worker died before marking the job done

    assert len(recipients(env, report_id)) == 2
    assert queued(env) == jobs_before  # the locate job itself + 2 notify jobs, nothing more
    assert env.gateway.count("move") == 1


def test_locate_replayed_after_the_move_but_before_the_commit_still_records_the_copies(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org")
    env.gateway.hold(MSGID, 2, "bob@example.org")
    report_id = submit(env)

    def die() -> None:
        raise Crash

    env.gateway.after["move"] = die
    with pytest.raises(Crash):
        run(env, "locate", report_id)
    # The gateway did move them; the database recorded nothing.
    assert env.gateway.quarantine_of(MSGID, 1) == LONG
    assert recipients(env, report_id) == []
    del env.gateway.after["move"]

    settle(env)

    assert states(env, report_id) == {"alice@example.org": "notified", "bob@example.org": "notified"}
    assert report_of(env, report_id).state == "notified"
    assert env.gateway.count("move") == 1  # nothing left in the short quarantine to move


def test_a_new_copy_found_on_replay_is_added_once(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org")
    report_id = submit(env)
    run(env, "locate", report_id)
    env.gateway.hold(MSGID, 2, "bob@example.org")  # e.g. the gateway listed it late

    run(env, "locate", report_id)
    run(env, "locate", report_id)

    assert states(env, report_id) == {"alice@example.org": "notify_pending", "bob@example.org": "notify_pending"}
    assert len(queued(env, "notify")) == 2


def test_locate_gateway_outage_is_retried_and_then_succeeds(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org")
    report_id = submit(env)
    env.gateway.down = {"find"}

    with pytest.raises(RetryLater):
        run(env, "locate", report_id)
    assert report_of(env, report_id).state in ("pending", "locating")  # still working, not final
    assert recipients(env, report_id) == []

    env.gateway.down = set()
    settle(env)
    assert report_of(env, report_id).state == "notified"
    assert len(env.mailer.sent) == 1


def test_locate_move_outage_records_nothing_and_retries(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org")
    report_id = submit(env)
    env.gateway.down = {"move"}

    with pytest.raises(RetryLater):
        run(env, "locate", report_id)

    assert recipients(env, report_id) == []  # no link is mailed for a copy whose retention was not extended
    assert env.gateway.quarantine_of(MSGID, 1) == SHORT


def test_locate_for_a_node_no_longer_configured_is_permanent(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org")
    report_id = submit(env)
    env.ctx.gateways = {}

    with pytest.raises(PermanentFailure):
        run(env, "locate", report_id)
    assert env.gateway.calls == []


def test_dead_locate_job_marks_the_report_failed(env: Env) -> None:
    report_id = submit(env)
    env.gateway.down = {"find"}
    with pytest.raises(RetryLater):
        run(env, "locate", report_id)

    with env.db.session() as session:
        env.job_types["locate"].on_dead(session, report_id, "RetryLater: gateway: find: connection refused")
        session.commit()

    report = report_of(env, report_id)
    assert report.state == "failed"
    assert report.error is not None and "connection refused" in report.error
    assert "failed" in actions(env, report_id)

    # A late replay of the locate job changes nothing any more.
    env.gateway.down = set()
    env.gateway.hold(MSGID, 1, "alice@example.org")
    run(env, "locate", report_id)
    assert report_of(env, report_id).state == "failed"
    assert recipients(env, report_id) == []


def test_on_dead_does_not_overwrite_a_finished_report(env: Env) -> None:
    report_id, _ = notified_report(env, "alice@example.org")
    with env.db.session() as session:
        env.job_types["locate"].on_dead(session, report_id, "late")
        session.commit()
    assert report_of(env, report_id).state == "notified"


def test_a_copy_that_vanishes_between_find_and_move_is_not_mailed(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org")
    env.gateway.hold(MSGID, 2, "bob@example.org")
    env.gateway.after["find"] = lambda: (env.gateway.lose(MSGID, 2), env.gateway.after.pop("find"))
    report_id = submit(env)
    settle(env)
    assert states(env, report_id) == {"alice@example.org": "notified"}
    assert [m["To"] for m in env.mailer.sent] == ["alice@example.org"]


def test_one_find_and_one_move_request_locate_a_whole_batch(env: Env) -> None:
    report_ids = located(env)

    assert env.gateway.count("find_many") == 1 and env.gateway.count("move_many") == 1
    assert all(report_of(env, r).state == "locating" for r in report_ids)
    assert [len(recipients(env, r)) for r in report_ids] == [2, 2, 2]
    assert len(queued(env, "notify")) == 6


def test_a_node_that_is_gone_fails_only_its_own_reports(env: Env) -> None:
    env.gateway.hold(BATCH_MESSAGES[0], 1, "alice@example.org")
    ok = submit(env, BATCH_MESSAGES[0])
    orphan = submit(env, BATCH_MESSAGES[1], ip="198.51.100.9")
    with env.db.session() as session:
        session.get_one(Report, orphan).node = "mx-retired"
        session.commit()
    with env.db.session() as session:
        failures = env.steps.reports.locate_many(session, [ok, orphan])

    assert set(failures) == {orphan} and isinstance(failures[orphan], PermanentFailure)
    assert states(env, ok) == {"alice@example.org": "notify_pending"}


def test_an_outage_sends_the_whole_batch_back_to_retry(env: Env) -> None:
    env.gateway.hold(BATCH_MESSAGES[0], 1, "alice@example.org")
    report_id = submit(env, BATCH_MESSAGES[0])
    env.gateway.down.add("find")
    with env.db.session() as session:
        failures = env.steps.reports.locate_many(session, [report_id])

    assert isinstance(failures[report_id], RetryLater)
    assert report_of(env, report_id).state == "pending"
