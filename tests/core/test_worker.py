"""The worker driving the real flow steps: leases that ran out, and claims that fill the slots
with batches (release/jobs/worker.py on top of release/core)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from release.config import WorkerSettings
from release.db.engine import Database
from release.db.models import Job, utcnow
from release.db.states import JobKind
from release.jobs import queue as jobs
from release.jobs.outcomes import PermanentFailure, RetryLater
from release.jobs.registry import JobRegistry, JobType, Target
from release.jobs.wake import LocalWaker
from release.jobs.worker import BATCH_LIMIT, Worker
from tests.support.flow import (
    Env,
    report_of,
    submit,
    worker_with,
)


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

    worker_with(env, {"locate": failing})._execute([stale])

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

    worker_with(env, {"locate": permanent})._execute([stale])

    with env.db.session() as session:
        job = session.scalar(select(Job))
        assert job is not None and job.state == "running"
    assert report_of(env, report_id).state == "pending"  # on_dead not run for a job we no longer own


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
