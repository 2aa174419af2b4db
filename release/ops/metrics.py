"""Prometheus metrics: database counts computed at scrape time, gateway and SMTP timings.

Counts of reports, recipients and jobs come from the database on every scrape (so every
process reports the same truth). Gateway and SMTP timings are measured where the calls
happen, i.e. per process: a web process only sees its own calls and the worker's are in the
worker process, unless ``PROMETHEUS_MULTIPROC_DIR`` is set for all of them (see
docs/operations.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from email.message import EmailMessage
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from release.db.engine import Database
from release.db.models import Job, Recipient, Report, SenderNotice, utcnow
from release.db.states import JobState
from release.gateway import (
    ContentUnavailable,
    Gateway,
    GatewayRejected,
    MessageContent,
    NodeHealth,
    QuarantinedCopy,
    stored,
)
from release.mail.sending import Mailer, SendResult

GATEWAY_SECONDS = Histogram(
    "release_gateway_request_seconds",
    "Time of one gateway API call, by node and operation (errors included).",
    ["node", "operation"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
GATEWAY_ERRORS = Counter(
    "release_gateway_errors_total",
    "Gateway calls that failed: kind=unavailable (retried later) or rejected (auth, bad request).",
    ["node", "operation", "kind"],
)
SMTP_SECONDS = Histogram(
    "release_smtp_send_seconds",
    "Time of one SMTP send (a batch over one connection), errors included.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0),
)
SMTP_ERRORS = Counter(
    "release_smtp_errors_total",
    "Messages the SMTP server did not take: status=temporary (retried) or permanent.",
    ["status"],
)
PUSHES = Counter(
    "release_rspamd_pushes_total",
    "Messages rspamd nodes pushed, by outcome: stored, repeat, too_large, unauthorized, invalid.",
    ["node", "outcome"],
)
PREVIEWS = Counter(
    "release_previews_total",
    "Release pages that showed a message: outcome=shown, too_large, malformed, too_complex, too_slow, "
    "or why there was none (off, not_supported, gone, outage).",
    ["node", "outcome"],
)

T = TypeVar("T")
CONTENT_TYPE = CONTENT_TYPE_LATEST


def _timed(node: str, operation: str, call: Callable[[], T]) -> T:
    started = time.perf_counter()
    try:
        return call()
    except ContentUnavailable:
        raise  # the gateway has no such read: not an error of the node
    except GatewayRejected:
        GATEWAY_ERRORS.labels(node, operation, "rejected").inc()
        raise
    except Exception:
        GATEWAY_ERRORS.labels(node, operation, "unavailable").inc()
        raise
    finally:
        GATEWAY_SECONDS.labels(node, operation).observe(time.perf_counter() - started)


class InstrumentedGateway:
    """A gateway whose calls are timed and counted; everything else is passed through."""

    def __init__(self, inner: Gateway) -> None:
        self.inner = inner
        self.name = inner.name

    def find(self, transaction: str, queue: int | None = None) -> list[QuarantinedCopy]:
        """Timed :meth:`Gateway.find`."""
        return _timed(self.name, "find", lambda: self.inner.find(transaction, queue))

    def find_many(self, transactions: Sequence[str]) -> dict[str, list[QuarantinedCopy]]:
        """Timed :meth:`Gateway.find_many` (counted as one find request)."""
        return _timed(self.name, "find", lambda: self.inner.find_many(transactions))

    def move(self, transaction: str, queues: Sequence[int], quarantine: str) -> int:
        """Timed :meth:`Gateway.move`."""
        return _timed(self.name, "move", lambda: self.inner.move(transaction, queues, quarantine))

    def move_many(self, copies: Sequence[tuple[str, int]], quarantine: str) -> int:
        """Timed :meth:`Gateway.move_many` (counted as one move request)."""
        return _timed(self.name, "move", lambda: self.inner.move_many(copies, quarantine))

    def release(self, transaction: str, queue: int) -> int:
        """Timed :meth:`Gateway.release`."""
        return _timed(self.name, "release", lambda: self.inner.release(transaction, queue))

    def delete(self, transaction: str, queues: Sequence[int]) -> int:
        """Timed :meth:`Gateway.delete`."""
        return _timed(self.name, "delete", lambda: self.inner.delete(transaction, queues))

    def content(self, transaction: str, queue: int, limit: int) -> MessageContent | None:
        """Timed :meth:`Gateway.content` (a preview's read)."""
        return _timed(self.name, "content", lambda: self.inner.content(transaction, queue, limit))

    def health(self) -> NodeHealth:
        """Timed :meth:`Gateway.health`; an unusable node counts as an error (it never raises)."""
        health = _timed(self.name, "health", self.inner.health)
        if not health.reachable:
            GATEWAY_ERRORS.labels(self.name, "health", "unavailable").inc()
        elif not health.authenticated:
            GATEWAY_ERRORS.labels(self.name, "health", "rejected").inc()
        return health

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)


class InstrumentedMailer:
    """A mailer whose sends are timed and whose refused messages are counted."""

    def __init__(self, inner: Mailer) -> None:
        self.inner = inner

    def send(self, messages: Sequence[EmailMessage]) -> list[SendResult]:
        """Timed :meth:`Mailer.send`."""
        started = time.perf_counter()
        try:
            results = self.inner.send(messages)
        finally:
            SMTP_SECONDS.observe(time.perf_counter() - started)
        for result in results:
            if not result.ok:
                SMTP_ERRORS.labels(result.status.value).inc()
        return results

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)


class DatabaseCollector(Collector):
    """Counts by state, read from the database at scrape time (GROUP BY, no row scans kept)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One query per table; a database outage yields release_database_up 0, not an error."""
        up = GaugeMetricFamily("release_database_up", "1 when the metrics queries reached the database.")
        try:
            families = self._families()
        except SQLAlchemyError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> list[GaugeMetricFamily]:
        reports = GaugeMetricFamily("release_reports", "Reports by state.", labels=["state"])
        recipients = GaugeMetricFamily("release_recipients", "Recipients' copies by state.", labels=["state"])
        jobs = GaugeMetricFamily("release_jobs", "Worker jobs by kind and state.", labels=["kind", "state"])
        notices = GaugeMetricFamily(
            "release_sender_notices", "Held messages pushed by ndr-mode nodes, by state.", labels=["state"]
        )
        stored_copies = GaugeMetricFamily(
            "release_stored_copies", "Copies the service keeps for rspamd nodes, by retention.", labels=["quarantine"]
        )
        stored_bytes = GaugeMetricFamily(
            "release_stored_bytes", "Compressed bytes of the messages the service keeps for rspamd nodes."
        )
        oldest = GaugeMetricFamily(
            "release_jobs_oldest_due_seconds",
            "How long the oldest queued job that is due has waited past its run time (0: none).",
        )
        now = utcnow()
        with self.db.session() as session:
            for state, count in session.execute(select(Report.state, func.count()).group_by(Report.state)):
                reports.add_metric([state], count)
            for state, count in session.execute(select(Recipient.state, func.count()).group_by(Recipient.state)):
                recipients.add_metric([state], count)
            for state, count in session.execute(select(SenderNotice.state, func.count()).group_by(SenderNotice.state)):
                notices.add_metric([state], count)
            rows = session.execute(select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state))
            for kind, state, count in rows:
                jobs.add_metric([kind, state], count)
            kept = stored.totals(session)
            for quarantine, count in kept.by_quarantine.items():
                stored_copies.add_metric([quarantine], count)
            stored_bytes.add_metric([], kept.stored_bytes)
            due = select(func.min(Job.run_after)).where(Job.state == JobState.QUEUED, Job.run_after <= now)
            first = session.scalar(due)
        oldest.add_metric([], max(0.0, (now - first).total_seconds()) if first else 0.0)
        return [reports, recipients, notices, jobs, oldest, stored_copies, stored_bytes]


def multiprocess_dir() -> str | None:
    """The shared directory of prometheus_client's multiprocess mode, when it is on."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir") or None


def database_registry(db: Database) -> CollectorRegistry:
    """A registry holding only the database counts of ``db`` (one per app)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(db))
    return registry


def exposition(db_registry: CollectorRegistry) -> bytes:
    """The text exposition: process metrics (all processes in multiprocess mode) plus DB counts."""
    if multiprocess_dir():
        process = CollectorRegistry()
        MultiProcessCollector(process)
    else:
        process = REGISTRY
    return generate_latest(process) + generate_latest(db_registry)
