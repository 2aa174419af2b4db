"""The durable job table: claiming, leases, retries, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from release.config import WorkerSettings
from release.db import migrate
from release.db.engine import Database
from release.db.models import Job, utcnow
from release.db.states import JobKind
from release.jobs import queue as jobs
from release.jobs import worker as worker_module
from release.jobs.registry import JobRegistry, JobType, Target
from release.jobs.wake import LocalWaker
from release.jobs.worker import Worker, start_in_thread


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url)
    migrate.upgrade(database)
    yield database
    database.dispose()


def add_jobs(db: Database, n: int) -> None:
    with db.session() as session:
        for i in range(n):
            jobs.enqueue(session, "notify", i)
        session.commit()


def test_concurrent_claimers_never_take_the_same_job(db: Database) -> None:
    add_jobs(db, 300)
    taken: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def claimer() -> None:
        start.wait()
        while True:
            with db.session() as session:
                batch = jobs.claim(session, 7, lease_seconds=60)
            if not batch:
                return
            with lock:
                taken.extend(job.id for job in batch)

    threads = [threading.Thread(target=claimer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    duplicates = [job_id for job_id, n in Counter(taken).items() if n > 1]
    assert duplicates == []
    assert len(taken) == 300


def test_expired_lease_makes_a_job_claimable_again(db: Database) -> None:
    add_jobs(db, 1)
    with db.session() as session:
        (first,) = jobs.claim(session, 10, lease_seconds=60)
        assert jobs.claim(session, 10, lease_seconds=60) == []  # leased: nobody else gets it
        later = utcnow() + timedelta(seconds=61)
        (again,) = jobs.claim(session, 10, lease_seconds=60, now=later)
    assert again.id == first.id and again.attempts == 2


def test_retry_later_waits_and_counts_attempts(db: Database) -> None:
    add_jobs(db, 1)
    with db.session() as session:
        (job,) = jobs.claim(session, 1, lease_seconds=60)
        jobs.retry_later(session, job.id, 30, "gateway down")
        session.commit()
        assert jobs.claim(session, 1, lease_seconds=60) == []
        (retried,) = jobs.claim(session, 1, lease_seconds=60, now=utcnow() + timedelta(seconds=31))
        assert retried.attempts == 2
        row = session.get(Job, job.id)
        assert row is not None and row.last_error == "gateway down"


def test_finished_and_buried_jobs_are_never_claimed(db: Database) -> None:
    add_jobs(db, 2)
    with db.session() as session:
        a, b = jobs.claim(session, 2, lease_seconds=1)
        jobs.finish(session, a.id)
        jobs.bury(session, b.id, "gave up")
        session.commit()
        assert jobs.claim(session, 5, lease_seconds=1, now=utcnow() + timedelta(hours=1)) == []
        states = dict(session.execute(select(Job.id, Job.state)).all())
    assert states == {a.id: "done", b.id: "dead"}


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    for attempt in range(1, 12):
        ceiling = min(900.0, 2.0 * 2 ** (attempt - 1))
        delays = [jobs.backoff_seconds(attempt, 2.0, 900.0) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert jobs.backoff_seconds(30, 2.0, 900.0) <= 900.0


def test_a_busy_worker_claims_several_jobs_per_query(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    add_jobs(db, 96)
    ran: list[int] = []
    claims: list[int] = []
    real_claim = jobs.claim

    def counting_claim(session: Session, limit: int, lease_seconds: int, **options: Any) -> list[jobs.ClaimedJob]:
        claimed = real_claim(session, limit, lease_seconds, **options)
        if claimed:
            claims.append(len(claimed))
        return claimed

    def handler(_session: Session, ref_id: int) -> None:
        time.sleep(0.005 + ref_id % 7 * 0.005)  # gateway round trips of different lengths
        ran.append(ref_id)

    monkeypatch.setattr(jobs, "claim", counting_claim)
    monkeypatch.setattr(worker_module, "CLAIM_GATHER_SECONDS", 5.0)  # no early claim on a slow machine
    settings = WorkerSettings(concurrency=16, idle_poll_seconds=0.05)
    registry = JobRegistry([JobType(JobKind.NOTIFY, handler, None, "notify", Target.COPY)])
    worker = Worker(db, registry, settings, LocalWaker(), polling=True)
    thread = start_in_thread(worker)
    deadline = time.monotonic() + 30
    while len(ran) < 96 and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.stop()
    thread.join(timeout=10)
    assert sorted(ran) == list(range(96))
    # Each claim under the backlog waited for a quarter of the slots (4) to be free; only the
    # last one, which emptied the queue, may take fewer.
    assert all(n >= 4 for n in claims[:-1]), claims
    with db.session() as session:
        assert set(session.scalars(select(Job.state))) == {"done"}


@pytest.mark.postgres
def test_one_wake_up_notify_per_transaction_and_again_after_a_rollback(postgres_url: str) -> None:
    """NOTIFY is PostgreSQL's wake-up channel: one per transaction, not one per job."""
    db = Database(postgres_url)
    migrate.upgrade(db)
    sent: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.startswith("NOTIFY"):
            sent.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    with db.session() as session:
        jobs.enqueue(session, "notify", 1)
        jobs.enqueue(session, "notify", 2)  # a locate queues one job per copy
        session.commit()
        assert len(sent) == 1
        jobs.enqueue(session, "notify", 3)
        session.rollback()
        jobs.enqueue(session, "notify", 4)  # the rolled-back NOTIFY was never delivered
        session.commit()
    assert len(sent) == 3
    with db.session() as session:
        assert sorted(session.scalars(select(Job.ref_id))) == [1, 2, 4]
    db.dispose()
