"""The flow tests' world: the domain steps wired to a fake gateway, a recording mailer and
a settable clock on a real SQLite file, and helpers that drive jobs the way the worker does."""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from release.container import Steps, build_steps, job_types
from release.core import links
from release.core.context import Context
from release.core.reports import Submission
from release.db import migrate
from release.db.engine import Database
from release.db.models import Event, Job, Recipient, Report
from release.jobs import queue as jobs
from release.jobs.registry import JobRegistry
from release.jobs.wake import LocalWaker
from release.jobs.worker import Worker
from release.mail.templates import MailTemplates
from tests.support.config import make_settings
from tests.support.fakes import COMMENT, MSGID, NODE, Clock, FakeGateway
from tests.support.mailer import RecordingMailer


@dataclass
class Env:
    db: Database
    ctx: Context
    steps: Steps
    job_types: JobRegistry
    gateway: FakeGateway
    mailer: RecordingMailer
    clock: Clock


def migrated_template(directory: Path) -> Path:
    """An upgraded empty database file, migrated once and copied for each test (fast)."""
    path = directory / "template.sqlite3"
    db = Database(f"sqlite:///{path}")
    migrate.upgrade(db)
    db.dispose()
    return path


@contextmanager
def flow_env(tmp_path: Path, migrated: Path, mail_templates: MailTemplates) -> Iterator[Env]:
    """A fresh copy of the migrated database with the steps wired to fakes."""
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


def worker_with(env: Env, handlers: dict[str, Callable[..., None]]) -> Worker:
    """A worker whose job types run ``handlers`` (by kind) one job at a time."""
    registry = JobRegistry(
        dataclasses.replace(env.job_types[kind], run=run, run_many=None) for kind, run in handlers.items()
    )
    return Worker(env.db, registry, env.ctx.settings.worker, LocalWaker())
