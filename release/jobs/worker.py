"""The worker: claims due jobs and runs them concurrently, with leases and backoff.

It wakes as soon as work is committed: PostgreSQL LISTEN/NOTIFY across processes, an
in-process event when web and worker share a process. Polling is only the fallback
(SQLite shared between processes) and the timer for retries that come due.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sqlalchemy.orm import Session

from release.config import WorkerSettings
from release.db.engine import Database
from release.db.models import utcnow
from release.jobs import queue as jobs
from release.jobs.outcomes import Deferred, PermanentFailure
from release.jobs.registry import JobRegistry
from release.jobs.wake import Waker

log = logging.getLogger("release.worker")  # the name operators filter job lines on (docs/operations.md)
BATCH_LIMIT = 16  # jobs per batch handler call: one gateway request, one SMTP session each
MAX_IDLE_WAIT = 30.0
CLAIM_BATCH_DIVISOR = 4  # under a backlog, claim once a quarter of the slots is free...
CLAIM_GATHER_SECONDS = 0.05  # ...or after this long, whichever comes first
# Polls at most this long apart skip the next-due query between polls (see _idle_timeout).
SHORT_POLL_SECONDS = 1.0


class Worker:
    """Runs job handlers from a thread pool; one instance per worker process."""

    def __init__(
        self,
        db: Database,
        job_types: JobRegistry,
        settings: WorkerSettings,
        waker: Waker,
        *,
        polling: bool = False,
    ) -> None:
        """``polling``: no one can wake this worker (SQLite shared across processes). Kinds
        with a ``run_many`` have their claimed jobs run together, up to BATCH_LIMIT a call."""
        self.db = db
        self.job_types = job_types
        self._batched = {kind for kind, t in job_types.items() if t.run_many is not None}
        self._priorities = job_types.priorities()
        self.settings = settings
        self.waker = waker
        self.max_idle = settings.idle_poll_seconds if polling else MAX_IDLE_WAIT
        self.stopping = threading.Event()
        self._slot_freed = threading.Event()
        self._pool = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="release-job")
        self._in_flight: dict[Future[Any], int] = {}  # running batches (one slot each) and their sizes
        self._lock = threading.Lock()
        self._claim_batch = max(1, settings.concurrency // CLAIM_BATCH_DIVISOR)
        self._backlog = False  # the last claim took as many jobs as it asked for

    def run(self) -> None:
        """Process jobs until :meth:`stop` is called."""
        log.info("worker started (concurrency %d)", self.settings.concurrency)
        while not self.stopping.is_set():
            if self._free_slots() == 0:
                self._slot_freed.wait(1.0)
                self._slot_freed.clear()
                continue
            self._gather_slots()
            try:
                if not self.run_available():
                    self.waker.wait(self._idle_timeout())
            except Exception:  # noqa: BLE001 - the database may be briefly gone: never die
                log.exception("could not reach the job table; retrying shortly")
                self.stopping.wait(1.0)
        self._pool.shutdown(wait=True)
        log.info("worker stopped")

    def _gather_slots(self) -> None:
        """Under a backlog (the last claim got all it asked for), wait briefly for a few free
        slots, so one claim query takes several jobs instead of one per finished job."""
        if not self._backlog:
            return
        deadline = time.monotonic() + CLAIM_GATHER_SECONDS
        while self._free_slots() < self._claim_batch and not self.stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._slot_freed.wait(remaining)
            self._slot_freed.clear()

    def run_available(self) -> int:
        """Claim due jobs for the free slots and start them; returns how many started.

        A slot runs one batch: a job, or up to BATCH_LIMIT jobs of a kind with a batch
        handler. So one claim asks for enough jobs to fill every free slot with a full
        batch, and gives back at once what it cannot start (single jobs beyond the slots).
        """
        free = self._free_slots()
        if free == 0:
            return 0
        limit = free * BATCH_LIMIT if self._batched else free
        with self.db.session() as session:
            claimed = jobs.claim(session, limit, self.settings.lease_seconds, priorities=self._priorities)
            batches = self._batches(claimed)
            if len(batches) > free:
                jobs.unclaim(session, [(job.id, job.attempts) for batch in batches[free:] for job in batch])
                session.commit()
                batches = batches[:free]
        self._backlog = len(claimed) == limit
        for batch in batches:
            future = self._pool.submit(self._execute, batch)
            with self._lock:
                self._in_flight[future] = len(batch)
            future.add_done_callback(self._done)
        return sum(len(batch) for batch in batches)

    def _batches(self, claimed: list[jobs.ClaimedJob]) -> list[list[jobs.ClaimedJob]]:
        """Group claimed jobs into what one slot runs, keeping the claim's priority order."""
        batches: list[list[jobs.ClaimedJob]] = []
        filling: dict[str, list[jobs.ClaimedJob]] = {}
        for job in claimed:
            if job.kind not in self._batched:
                batches.append([job])
                continue
            batch = filling.get(job.kind)
            if batch is None or len(batch) == BATCH_LIMIT:
                batch = filling[job.kind] = []
                batches.append(batch)
            batch.append(job)
        return batches

    def drain(self, timeout: float = 30.0) -> None:
        """Run until no job is running or due before the timeout, retries included (tests, CLI)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            started = self.run_available()
            with self._lock:
                busy = bool(self._in_flight)
            if not started and not busy:
                with self.db.session() as session:
                    due = jobs.next_due(session)
                # Done when nothing more can come due before the deadline (a periodic or
                # deferred job far in the future does not count).
                if due is None or (due - utcnow()).total_seconds() > deadline - time.monotonic():
                    return
            if not started:
                self._slot_freed.wait(0.02)
                self._slot_freed.clear()
        raise TimeoutError("jobs still queued or running after the drain timeout")

    def stop(self) -> None:
        """Ask the loop to finish the jobs in flight and return."""
        self.stopping.set()
        self._slot_freed.set()
        self.waker.notify()

    def _free_slots(self) -> int:
        with self._lock:
            return self.settings.concurrency - len(self._in_flight)

    def _done(self, future: Future[Any]) -> None:
        with self._lock:
            self._in_flight.pop(future, None)
        self._slot_freed.set()
        # A finished job may have queued a retry or follow-up that is due before the idle
        # wait would end: let the loop look again.
        self.waker.notify()

    def _idle_timeout(self) -> float:
        if self.max_idle <= SHORT_POLL_SECONDS:
            # Polling often anyway: a due time would shorten the wait by less than one poll,
            # and skipping its query halves what an idle poll costs.
            return self.max_idle
        with self.db.session() as session:
            due = jobs.next_due(session)
        timeout = self.max_idle
        if due is not None:
            timeout = min(timeout, (due - utcnow()).total_seconds())
        return max(timeout, 0.01)

    def _execute(self, batch: list[jobs.ClaimedJob]) -> None:
        started, outcomes = time.perf_counter(), {job.id: "crashed" for job in batch}
        try:
            outcomes = self._run_batch(batch)
        finally:
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            for job in batch:
                outcome = outcomes.get(job.id, "crashed")
                log.info("job %s %d (#%d) %s in %.1fms", job.kind, job.id, job.ref_id, outcome, duration_ms,
                         extra={"job_kind": job.kind, "job_id": job.id, "ref_id": job.ref_id, "attempt": job.attempts,
                                "outcome": outcome, "duration_ms": duration_ms, "batch": len(batch)})  # fmt: skip

    def _run_batch(self, batch: list[jobs.ClaimedJob]) -> dict[int, str]:
        """Run claimed jobs of one kind; returns each job's outcome (done, deferred, retry, dead)."""
        kind = batch[0].kind
        with self.db.session() as session:
            failures: Mapping[int, Exception]
            try:
                job_type = self.job_types.get(kind)
                if job_type is None:
                    raise PermanentFailure(f"no handler for job kind {kind!r}")
                if job_type.run_many is not None:
                    failures = job_type.run_many(session, [job.ref_id for job in batch])
                else:
                    (job,) = batch
                    job_type.run(session, job.ref_id)
                    failures = {}
            except Exception as exc:  # noqa: BLE001 - every failure is retried, then buried
                session.rollback()
                failures = {job.ref_id: exc for job in batch}
            done = [job for job in batch if job.ref_id not in failures]
            # The handler's last changes (if it left any) commit with the jobs' "done".
            jobs.finish_many(session, [(job.id, job.attempts) for job in done])
            session.commit()
            outcomes = {job.id: "done" for job in done}
            for job in batch:
                if job.ref_id in failures:
                    outcomes[job.id] = self._conclude(session, job, failures[job.ref_id])
            return outcomes

    def _conclude(self, session: Session, job: jobs.ClaimedJob, exc: Exception) -> str:
        """Requeue, defer or bury a job that did not finish; returns its outcome."""
        if isinstance(exc, Deferred):
            # A limit, not a failure: wait until it frees up without using an attempt.
            delay = max(0.0, (exc.until - utcnow()).total_seconds())
            log.info("job %s %d (#%d) deferred for %.0fs: %s", job.kind, job.id, job.ref_id, delay, exc.reason)
            jobs.retry_later(session, job.id, delay, f"deferred: {exc}", attempts=job.attempts, refund_attempt=True)
            session.commit()
            return "deferred"
        if isinstance(exc, PermanentFailure):
            self._give_up(session, job, str(exc))
            return "dead"
        return self._retry_or_give_up(session, job, exc)

    def _retry_or_give_up(self, session: Session, job: jobs.ClaimedJob, exc: Exception) -> str:
        error = f"{type(exc).__name__}: {exc}"
        if job.attempts >= self.settings.max_attempts:
            self._give_up(session, job, error)
            return "dead"
        settings = self.settings
        delay = jobs.backoff_seconds(job.attempts, settings.backoff_base_seconds, settings.backoff_max_seconds)
        log.warning("job %s %d (#%d) attempt %d failed: %s; retry in %.1fs", job.kind, job.id, job.ref_id, job.attempts,
                    error, delay)  # fmt: skip
        jobs.retry_later(session, job.id, delay, error, attempts=job.attempts)
        session.commit()
        return "retry"

    def _give_up(self, session: Session, job: jobs.ClaimedJob, error: str) -> None:
        log.error("job %s %d for #%d gave up after %d attempts: %s", job.kind, job.id, job.ref_id, job.attempts, error)
        if jobs.bury(session, job.id, error, attempts=job.attempts):  # else: another worker claimed it since
            job_type = self.job_types.get(job.kind)
            if job_type is not None and job_type.on_dead is not None:
                job_type.on_dead(session, job.ref_id, error)
        session.commit()


def start_in_thread(worker: Worker) -> threading.Thread:
    """Run a worker loop in a daemon thread (demo mode and the single-process server)."""
    thread = threading.Thread(target=worker.run, name="release-worker", daemon=True)
    thread.start()
    return thread
