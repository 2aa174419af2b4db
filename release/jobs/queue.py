"""Durable jobs in the service's own database: enqueue, claim with a lease, finish, retry.

Jobs are written in the same transaction as the state change that needs them, so a crash
can never leave a report without its follow-up work. Claiming is one UPDATE ... RETURNING
over a sub-select that uses FOR UPDATE SKIP LOCKED on PostgreSQL, so any number of worker
processes share one backlog without taking a job twice; an expired lease makes a job
claimable again after a crashed worker.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, insert, literal, or_, select, tuple_, update
from sqlalchemy.orm import Session

from release.db.models import Job, utcnow
from release.db.states import JobState
from release.jobs.wake import wake_workers_on_commit

ERROR_LIMIT = 2000
DEFAULT_PRIORITY = 2
UNFINISHED = (JobState.QUEUED, JobState.RUNNING)


@dataclass(frozen=True)
class ClaimedJob:
    """The fields a handler needs; detached from any session."""

    id: int
    kind: str
    ref_id: int
    attempts: int


def enqueue(session: Session, kind: str, ref_id: int, *, run_after: datetime | None = None) -> Job:
    """Add a job to the session's transaction and arrange for workers to wake on commit."""
    job = Job(kind=kind, ref_id=ref_id, state=JobState.QUEUED, run_after=run_after or utcnow())
    session.add(job)
    wake_workers_on_commit(session)
    return job


def enqueue_many(session: Session, kind: str, ref_ids: list[int]) -> None:
    """:func:`enqueue` for several rows in one INSERT (a located batch queues a mail per copy)."""
    if not ref_ids:
        return
    now = utcnow()
    session.execute(
        insert(Job), [{"kind": kind, "ref_id": r, "state": JobState.QUEUED, "run_after": now} for r in ref_ids]
    )
    wake_workers_on_commit(session)


def claim(
    session: Session,
    limit: int,
    lease_seconds: int,
    *,
    priorities: Mapping[str, int] | None = None,
    now: datetime | None = None,
) -> list[ClaimedJob]:
    """Atomically take up to ``limit`` due jobs (or jobs whose lease ran out) and commit;
    ``priorities`` (kind: rank, lower first, default 2) orders them under a backlog."""
    now = now or utcnow()
    due = or_(
        (Job.state == JobState.QUEUED) & (Job.run_after <= now),
        (Job.state == JobState.RUNNING) & (Job.locked_until < now),
    )
    # Finish what is started before starting more: under a backlog, a report's mail and a
    # recipient's release go ahead of locating further reports.
    ranks = {kind: rank for kind, rank in (priorities or {}).items() if rank != DEFAULT_PRIORITY}
    priority = case(ranks, value=Job.kind, else_=DEFAULT_PRIORITY) if ranks else literal(DEFAULT_PRIORITY)
    candidates = (
        select(Job.id)
        .where(due)
        .order_by(priority, Job.run_after, Job.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    stmt = (
        update(Job)
        .where(Job.id.in_(candidates.scalar_subquery()))
        .values(state=JobState.RUNNING, locked_until=now + timedelta(seconds=lease_seconds), attempts=Job.attempts + 1)
        .returning(Job.id, Job.kind, Job.ref_id, Job.attempts)
        .execution_options(synchronize_session=False)
    )
    rows = session.execute(stmt).all()
    session.commit()
    return [ClaimedJob(id=r.id, kind=r.kind, ref_id=r.ref_id, attempts=r.attempts) for r in rows]


def _owned(job_id: int, attempts: int | None) -> Any:
    """The job, and - given the claim's ``attempts`` - only while that claim still holds it.

    ``attempts`` is the fencing token: a worker whose lease ran out while it was still busy
    must not requeue, bury or finish a job another worker has claimed since.
    """
    if attempts is None:
        return Job.id == job_id
    return (Job.id == job_id) & (Job.attempts == attempts) & (Job.state == JobState.RUNNING)


def _still_claimed(claims: list[tuple[int, int]]) -> Any:
    """:func:`_owned` for many claims: each (id, attempts) only while that claim holds it."""
    return tuple_(Job.id, Job.attempts).in_(claims) & (Job.state == JobState.RUNNING)


def finish(session: Session, job_id: int, *, attempts: int | None = None) -> None:
    """Mark a job done (in the caller's transaction)."""
    session.execute(
        update(Job)
        .where(_owned(job_id, attempts))
        .values(state=JobState.DONE, finished_at=utcnow(), locked_until=None)
        .execution_options(synchronize_session=False)
    )


def finish_many(session: Session, claims: list[tuple[int, int]]) -> None:
    """Mark jobs done, each only while its claim (id, attempts) still holds it; one statement."""
    if not claims:
        return
    session.execute(
        update(Job)
        .where(_still_claimed(claims))
        .values(state=JobState.DONE, finished_at=utcnow(), locked_until=None)
        .execution_options(synchronize_session=False)
    )


def unclaim(session: Session, claims: list[tuple[int, int]]) -> None:
    """Give claimed jobs back untouched (a claim took more than the worker can start): due
    again at once, in their old place in the queue, the claim's attempt refunded."""
    if not claims:
        return
    session.execute(
        update(Job)
        .where(_still_claimed(claims))
        .values(state=JobState.QUEUED, locked_until=None, attempts=Job.attempts - 1)
        .execution_options(synchronize_session=False)
    )


def retry_later(
    session: Session,
    job_id: int,
    delay_seconds: float,
    error: str,
    *,
    attempts: int | None = None,
    refund_attempt: bool = False,
) -> None:
    """Put a job back in the queue after ``delay_seconds`` with the error recorded.

    ``refund_attempt``: the run was a deferral (a limit), not a failure; give back the attempt
    the claim counted, so waiting never uses up ``max_attempts``.
    """
    values: dict[str, Any] = {
        "state": JobState.QUEUED,
        "run_after": utcnow() + timedelta(seconds=delay_seconds),
        "locked_until": None,
        "last_error": error[:ERROR_LIMIT],
    }
    if refund_attempt:
        values["attempts"] = Job.attempts - 1
    session.execute(
        update(Job).where(_owned(job_id, attempts)).values(**values).execution_options(synchronize_session=False)
    )


def bury(session: Session, job_id: int, error: str, *, attempts: int | None = None) -> bool:
    """Give up on a job; it stays visible to admins as dead. False: another claim holds it."""
    result = session.execute(
        update(Job)
        .where(_owned(job_id, attempts))
        .values(state=JobState.DEAD, finished_at=utcnow(), locked_until=None, last_error=error[:ERROR_LIMIT])
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 1))


def backoff_seconds(attempts: int, base: float, maximum: float) -> float:
    """Exponential backoff with full jitter, so a recovering gateway is not stampeded."""
    ceiling = min(maximum, base * (2 ** max(0, attempts - 1)))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security


def next_due(session: Session) -> datetime | None:
    """When the earliest job becomes claimable (for the worker's sleep): a queued job's
    ``run_after``, or the end of a running job's lease (its worker may have died)."""
    queued = session.scalar(select(func.min(Job.run_after)).where(Job.state == JobState.QUEUED))
    leased = session.scalar(select(func.min(Job.locked_until)).where(Job.state == JobState.RUNNING))
    return min((t for t in (queued, leased) if t is not None), default=None)


def pending_for(session: Session, kind: str, ref_id: int) -> Job | None:
    """The newest unfinished job of a kind for a row, if any (shown as 'next attempt')."""
    return session.scalar(
        select(Job)
        .where(Job.kind == kind, Job.ref_id == ref_id, Job.state.in_(UNFINISHED))
        .order_by(Job.id.desc())
        .limit(1)
    )
