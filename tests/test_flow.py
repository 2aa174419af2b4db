"""Flow unit tests: the domain steps with fakes (no HTTP, no SMTP) on a real SQLite database.

A small in-memory gateway stands in for Halon, RecordingMailer for SMTP. Jobs are settled by
reading the Job table and calling the flow's handlers directly, the way the worker does, so
each test can stop or crash a step at an exact line and replay it.
"""

from __future__ import annotations

import dataclasses
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from release.config import I18nSettings, Settings, WorkerSettings, settings_from_mapping
from release.container import Steps, build_steps, job_types
from release.core import links
from release.core import notify as notify_module
from release.core.context import Context
from release.core.notify import notification_message_id
from release.core.release import find_recipient_by_token
from release.core.reports import Submission, find_report
from release.db import migrate
from release.db.engine import Database
from release.db.models import Event, Job, Recipient, Report, utcnow
from release.db.states import JobKind
from release.gateway import GatewayError, GatewayRejected, NodeHealth, QuarantinedCopy
from release.jobs import queue as jobs
from release.jobs.outcomes import Deferred, PermanentFailure, RetryLater
from release.jobs.registry import JobRegistry, JobType, Target
from release.jobs.wake import LocalWaker
from release.jobs.worker import BATCH_LIMIT, Worker
from release.mail.templates import MailTemplates
from tests.support.mailer import RecordingMailer

NODE = "mx1"
SHORT = "mailquarantine:1"
LONG = "mailquarantine:2"
MSGID = "2d5f1c3e-0000-4000-8000-000000000001"
COMMENT = "Genuine invoice, please release — SECRET-COMMENT-MARKER"


class Crash(Exception):
    """The process died here (raised from a hook, never caught by the flow)."""


class FakeGateway:
    """An in-memory gateway node: copies keyed by (transaction, queue), with switches.

    - ``down``: operation names that raise GatewayError (outage)
    - ``release_matches_nothing``: release reports 0 although the copy is still held
    - ``deliver_on_release``: a released copy leaves the node (delivered); otherwise it stays
      in the active queue (quarantine None)
    - ``after``: a hook per operation, run after its effect (simulate a crash right there)
    - ``calls``: every call, in order
    """

    def __init__(self, name: str = NODE) -> None:
        self.name = name
        self.copies: dict[tuple[str, int], QuarantinedCopy] = {}
        self.calls: list[tuple[str, Any]] = []
        self.down: set[str] = set()
        self.release_matches_nothing = False
        self.reject_release = False
        self.deliver_on_release = True
        self.delivered: list[tuple[str, int]] = []
        self.after: dict[str, Callable[[], None]] = {}

    # -- test set-up ------------------------------------------------------------------------

    def hold(self, transaction: str, queue: int, recipient: str, quarantine: str | None = SHORT) -> None:
        self.copies[(transaction, queue)] = QuarantinedCopy(
            transaction=transaction,
            queue=queue,
            sender="offers@spammy.example",
            recipient=recipient,
            subject="Invoice 42 from www.example.com",
            received_at=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
            quarantine=quarantine,
            spam_score=7.5,
        )

    def lose(self, transaction: str, queue: int | None = None) -> None:
        """The gateway's own retention removed the copy (or all copies)."""
        for key in [k for k in self.copies if k[0] == transaction and (queue is None or k[1] == queue)]:
            del self.copies[key]

    def count(self, op: str) -> int:
        return sum(1 for name, _ in self.calls if name == op)

    def quarantine_of(self, transaction: str, queue: int) -> str | None:
        return self.copies[(transaction, queue)].quarantine

    def _enter(self, op: str, args: Any) -> None:
        self.calls.append((op, args))
        if op in self.down:
            raise GatewayError(f"{op}: connection refused (simulated)")

    def _leave(self, op: str) -> None:
        hook = self.after.get(op)
        if hook is not None:
            hook()

    # -- the Gateway protocol ---------------------------------------------------------------

    def find(self, transaction: str, queue: int | None = None) -> list[QuarantinedCopy]:
        self._enter("find", (transaction, queue))
        found = [c for (t, q), c in sorted(self.copies.items()) if t == transaction and queue in (None, q)]
        self._leave("find")
        return found

    def find_many(self, transactions: Sequence[str]) -> dict[str, list[QuarantinedCopy]]:
        self.calls.append(("find_many", tuple(transactions)))  # and one "find" per transaction
        return {t: self.find(t) for t in transactions}

    def move_many(self, copies: Sequence[tuple[str, int]], quarantine: str) -> int:
        self.calls.append(("move_many", tuple(copies)))
        by_transaction: dict[str, list[int]] = {}
        for transaction, queue in copies:
            by_transaction.setdefault(transaction, []).append(queue)
        return sum(self.move(t, queues, quarantine) for t, queues in by_transaction.items())

    def move(self, transaction: str, queues: Sequence[int], quarantine: str) -> int:
        self._enter("move", (transaction, tuple(queues), quarantine))
        moved = 0
        for q in queues:
            copy = self.copies.get((transaction, q))
            if copy is not None and copy.quarantine is not None:
                self.copies[(transaction, q)] = replace(copy, quarantine=quarantine)
                moved += 1
        self._leave("move")
        return moved

    def release(self, transaction: str, queue: int) -> int:
        self._enter("release", (transaction, queue))
        if self.reject_release:
            raise GatewayRejected("release: HTTP 403 (simulated)")
        copy = self.copies.get((transaction, queue))
        if copy is None or copy.quarantine is None or self.release_matches_nothing:
            self._leave("release")
            return 0
        if self.deliver_on_release:
            del self.copies[(transaction, queue)]
        else:
            self.copies[(transaction, queue)] = replace(copy, quarantine=None)
        self.delivered.append((transaction, queue))
        self._leave("release")
        return 1

    def delete(self, transaction: str, queues: Sequence[int]) -> int:
        self._enter("delete", (transaction, tuple(queues)))
        gone = 0
        for q in queues:
            if self.copies.pop((transaction, q), None) is not None:
                gone += 1
        self._leave("delete")
        return gone

    def health(self) -> NodeHealth:
        self._enter("health", ())
        return NodeHealth(reachable=True, authenticated=True, latency_ms=0.1)


class Clock:
    """A settable clock for the flow (retention and expiry decisions)."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Env:
    db: Database
    ctx: Context
    steps: Steps
    job_types: JobRegistry
    gateway: FakeGateway
    mailer: RecordingMailer
    clock: Clock


def make_settings(database_url: str) -> Settings:
    return settings_from_mapping(
        {
            "app": {"public_url": "https://release.example.test", "secret_key": secrets.token_urlsafe(32)},
            "database": {"url": database_url},
            "links": {"keys": [secrets.token_urlsafe(24)]},
            "captcha": {"provider": "altcha", "altcha_max_number": 2000},
            "smtp": {"host": "127.0.0.1", "port": 2525, "security": "none", "sender": "Release <release@example.test>"},
            "worker": {"backoff_base_seconds": 0.05, "backoff_max_seconds": 0.2, "max_attempts": 5},
            "nodes": [
                {
                    "name": NODE,
                    "api_url": "https://mx1.test",
                    "username": "release",
                    "password": "sim-password-0123",
                    "short_quarantine": SHORT,
                    "long_quarantine": LONG,
                }
            ],
        }
    )


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An upgraded empty database file, migrated once and copied for each test (fast)."""
    path = tmp_path_factory.mktemp("flow-template") / "template.sqlite3"
    db = Database(f"sqlite:///{path}")
    migrate.upgrade(db)
    db.dispose()
    return path


@pytest.fixture(scope="module")
def mail_templates() -> MailTemplates:
    return MailTemplates(I18nSettings())


@pytest.fixture
def env(tmp_path: Path, migrated: Path, mail_templates: MailTemplates) -> Iterator[Env]:
    path = tmp_path / "flow.sqlite3"
    shutil.copyfile(migrated, path)
    url = f"sqlite:///{path}"
    db = Database(url)
    # Sessions open and close SQLite connections (NullPool); one idle connection held for the
    # test keeps the WAL from being checkpointed and removed at every close.
    keeper = sqlite3.connect(path)
    keeper.execute("SELECT count(*) FROM sqlite_master").fetchall()
    gateway = FakeGateway()
    mailer = RecordingMailer()
    clock = Clock()
    ctx = Context(make_settings(url), {NODE: gateway}, mailer, mail_templates, clock=clock)
    steps = build_steps(ctx)
    yield Env(db, ctx, steps, job_types(steps), gateway, mailer, clock)
    keeper.close()
    db.dispose()


# --------------------------------------------------------------------------- helpers


def submit(env: Env, message_id: str = MSGID, ip: str = "198.51.100.7") -> int:
    link = links.ReportLink(NODE, message_id, int(env.clock().timestamp()))
    with env.db.session() as session:
        return env.steps.reports.submit(session, Submission(link, COMMENT, ip)).id


def queued(env: Env, kind: str | None = None) -> list[tuple[str, int]]:
    with env.db.session() as session:
        query = select(Job.kind, Job.ref_id).where(Job.state == "queued").order_by(Job.id)
        if kind is not None:
            query = query.where(Job.kind == kind)
        return [(k, r) for k, r in session.execute(query).all()]


def handler(env: Env, kind: str) -> Callable[..., None]:
    return env.job_types[kind].run


def settle(env: Env, kind: str | None = None) -> list[tuple[str, int]]:
    """Run queued jobs (of ``kind``) in order until none is left, as the worker would.

    A failing job raises out of here and stays queued, so the test sees the failure.
    """
    ran: list[tuple[str, int]] = []
    while True:
        with env.db.session() as session:
            query = select(Job).where(Job.state == "queued").order_by(Job.id).limit(1)
            if kind is not None:
                query = query.where(Job.kind == kind)
            job = session.scalar(query)
            if job is None:
                return ran
            job_id, job_kind, ref_id = job.id, job.kind, job.ref_id
            session.commit()
        with env.db.session() as session:
            handler(env, job_kind)(session, ref_id)
            jobs.finish(session, job_id)
            session.commit()
        ran.append((job_kind, ref_id))


def run(env: Env, kind: str, ref_id: int) -> None:
    """Run one step directly in a fresh session (a replay, or a job the test drives by hand)."""
    with env.db.session() as session:
        handler(env, kind)(session, ref_id)


def report_of(env: Env, report_id: int) -> Report:
    with env.db.session() as session:
        report = session.get(Report, report_id)
        assert report is not None
        session.expunge(report)
        return report


def recipients(env: Env, report_id: int) -> list[Recipient]:
    with env.db.session() as session:
        rows = list(
            session.scalars(select(Recipient).where(Recipient.report_id == report_id).order_by(Recipient.queue))
        )
        session.expunge_all()
        return rows


def states(env: Env, report_id: int) -> dict[str, str]:
    return {r.address: r.state for r in recipients(env, report_id)}


def request(env: Env, recipient_id: int) -> Recipient:
    with env.db.session() as session:
        recipient = session.get(Recipient, recipient_id)
        assert recipient is not None
        result = env.steps.releases.request(session, recipient)
        session.expunge(result)
        return result


def actions(env: Env, report_id: int) -> list[str]:
    with env.db.session() as session:
        return list(session.scalars(select(Event.action).where(Event.report_id == report_id).order_by(Event.id)))


def notified_report(env: Env, *addresses: str) -> tuple[int, list[Recipient]]:
    """A report located and mailed to every address (one copy each, queues 1..n)."""
    for queue, address in enumerate(addresses, start=1):
        env.gateway.hold(MSGID, queue, address)
    report_id = submit(env)
    settle(env)
    rows = recipients(env, report_id)
    assert [r.state for r in rows] == ["notified"] * len(addresses)
    return report_id, rows


def requested(env: Env, address: str = "alice@example.org") -> tuple[int, Recipient]:
    report_id, (recipient,) = notified_report(env, address)
    request(env, recipient.id)
    assert queued(env) == [("release", recipient.id)]
    env.gateway.calls.clear()
    return report_id, recipient


def one(env: Env, recipient_id: int) -> Recipient:
    with env.db.session() as session:
        row = session.get(Recipient, recipient_id)
        assert row is not None
        session.expunge(row)
        return row


# --------------------------------------------------------------------------- report


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


# --------------------------------------------------------------------------- notify


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


# --------------------------------------------------------------------------- request + release


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


# --------------------------------------------------------------------------- review findings


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


def _worker(env: Env, handlers: dict[str, Callable[..., None]]) -> Worker:
    registry = JobRegistry(
        dataclasses.replace(env.job_types[kind], run=run, run_many=None) for kind, run in handlers.items()
    )
    return Worker(env.db, registry, env.ctx.settings.worker, LocalWaker())


def test_a_worker_whose_lease_ran_out_cannot_requeue_a_job_another_worker_holds(env: Env) -> None:
    """Worker 1 is slow (SMTP can block longer than the lease); worker 2 re-claims the job.

    When worker 1's attempt then fails, it must not put the job back in the queue while
    worker 2 is running it - a third worker would run it at the same time.
    """
    report_id = submit(env)
    with env.db.session() as session:
        (stale,) = jobs.claim(session, 1, lease_seconds=1)
        (current,) = jobs.claim(session, 1, lease_seconds=60, now=utcnow() + timedelta(seconds=2))
    assert current.id == stale.id and current.attempts == 2

    def failing(session: Any, ref_id: int) -> None:
        raise RetryLater("gateway: timed out")

    _worker(env, {"locate": failing})._execute([stale])

    with env.db.session() as session:
        assert jobs.claim(session, 1, lease_seconds=60, now=utcnow() + timedelta(seconds=10)) == []
        job = session.get(Job, current.id)
        assert job is not None and job.state == "running"
    assert report_of(env, report_id).state == "pending"


def test_a_worker_whose_lease_ran_out_cannot_bury_a_job_another_worker_holds(env: Env) -> None:
    report_id = submit(env)
    with env.db.session() as session:
        (stale,) = jobs.claim(session, 1, lease_seconds=1)
        jobs.claim(session, 1, lease_seconds=60, now=utcnow() + timedelta(seconds=2))

    def permanent(session: Any, ref_id: int) -> None:
        raise PermanentFailure("node gone")

    _worker(env, {"locate": permanent})._execute([stale])

    with env.db.session() as session:
        job = session.scalar(select(Job))
        assert job is not None and job.state == "running"
    assert report_of(env, report_id).state == "pending"  # on_dead not run for a job we no longer own


def test_report_is_notified_when_at_least_one_recipient_was_told(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org")
    env.gateway.hold(MSGID, 2, "bob@example.org\r\nBcc: victim@example.net")
    report_id = submit(env)
    settle(env)
    assert sorted(r.state for r in recipients(env, report_id)) == ["failed", "notified"]
    assert report_of(env, report_id).state == "notified"


def test_a_refused_release_attempt_does_not_count_as_maybe_released(env: Env) -> None:
    _, recipient = requested(env)
    env.gateway.reject_release = True
    with pytest.raises(RetryLater):
        run(env, "release", recipient.id)
    env.gateway.reject_release = False
    env.gateway.lose(MSGID)  # then the gateway's own retention removes the copy
    run(env, "release", recipient.id)
    assert recipients(env, recipient.report_id)[0].state == "expired"


def test_a_copy_that_vanishes_between_find_and_move_is_not_mailed(env: Env) -> None:
    env.gateway.hold(MSGID, 1, "alice@example.org")
    env.gateway.hold(MSGID, 2, "bob@example.org")
    env.gateway.after["find"] = lambda: (env.gateway.lose(MSGID, 2), env.gateway.after.pop("find"))
    report_id = submit(env)
    settle(env)
    assert states(env, report_id) == {"alice@example.org": "notified"}
    assert [m["To"] for m in env.mailer.sent] == ["alice@example.org"]


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


# --------------------------------------------------------------------------- batches
# The worker's batches: many locates in one gateway request, many mails in one SMTP session,
# and one item's trouble never holds back the others.

BATCH_MESSAGES = [f"2d5f1c3e-0000-4000-8000-00000000010{i}" for i in range(3)]


def located(env: Env) -> list[int]:
    """Three reports, two copies each, located in one batch; returns the report ids."""
    for i, message_id in enumerate(BATCH_MESSAGES):
        env.gateway.hold(message_id, 1, f"alice{i}@example.org")
        env.gateway.hold(message_id, 2, f"bob{i}@example.org")
    report_ids = [submit(env, message_id, ip=f"198.51.100.{i}") for i, message_id in enumerate(BATCH_MESSAGES)]
    with env.db.session() as session:
        assert env.steps.reports.locate_many(session, report_ids) == {}
    return report_ids


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


def test_a_claim_fills_slots_with_batches_and_gives_back_what_it_cannot_start(env: Env) -> None:
    db: Database = env.db
    with db.session() as session:
        for i in range(5):
            jobs.enqueue(session, "release", 100 + i)
        for i in range(40):
            jobs.enqueue(session, "notify", 200 + i)
        session.commit()
    gate = threading.Event()
    singles: list[int] = []
    batches: list[list[int]] = []

    def release(_session: object, ref_id: int) -> None:
        gate.wait(10)
        singles.append(ref_id)

    def notify_many(_session: object, ref_ids: list[int]) -> dict[int, Exception]:
        gate.wait(10)
        batches.append(list(ref_ids))
        return {}

    settings = WorkerSettings(concurrency=3, idle_poll_seconds=0.05)
    registry = JobRegistry(
        [
            JobType(JobKind.RELEASE, release, None, "release", Target.COPY, priority=0),
            JobType(JobKind.NOTIFY, release, None, "notify", Target.COPY, priority=1, run_many=notify_many),
        ]
    )
    worker = Worker(db, registry, settings, LocalWaker())

    assert worker.run_available() == 3  # three slots, three releases (they go first)
    with db.session() as session:
        rows = session.execute(select(Job.kind, Job.state, Job.attempts)).all()
    assert sorted((k, s, a) for k, s, a in rows if s == "running") == [("release", "running", 1)] * 3
    assert all(a == 0 for _, s, a in rows if s == "queued")  # given back: the attempt refunded
    gate.set()
    worker.drain(timeout=20)
    time.sleep(0.05)

    assert sorted(singles) == [100, 101, 102, 103, 104]
    assert sorted(i for b in batches for i in b) == list(range(200, 240))
    assert max(len(b) for b in batches) == BATCH_LIMIT
    with db.session() as session:
        assert set(session.scalars(select(Job.state))) == {"done"}
        assert set(session.scalars(select(Job.attempts))) == {1}
