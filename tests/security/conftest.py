"""Fixtures for the security tests: stacks with their own settings, a drain that leaves
deferred work alone, snapshots of the database and the simulator."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from release import create_app
from release.config import settings_from_mapping
from release.container import Services
from release.db import migrate
from release.db.models import Base, Job, Recipient, Report, utcnow
from release.devtools.mailcapture import CaptureServer
from release.devtools.simulator import SimulatorServer
from release.jobs.worker import Worker
from tests.conftest import Stack, make_config

StackFactory = Callable[..., Stack]


@pytest.fixture
def make_stack(database_url: str, simulator: SimulatorServer, smtp_server: CaptureServer) -> Iterator[StackFactory]:
    """Build stacks on this test's database with extra config sections (merged), e.g.
    ``make_stack(limits={"reports_per_ip_per_hour": 3})``; several share the database."""
    built: list[Stack] = []

    def build(**sections: dict[str, Any]) -> Stack:
        settings = settings_from_mapping(make_config(database_url, simulator, smtp_server.port, **sections))
        app = create_app(settings)
        app.config["TESTING"] = True
        services: Services = app.extensions["release"]
        migrate.upgrade(services.db)
        worker = services.build_worker(in_process=True)
        stack = Stack(app, services, worker, simulator, smtp_server, client=None)  # type: ignore[arg-type]
        stack.client = stack.new_client()
        built.append(stack)
        return stack

    yield build
    for stack in built:
        stack.worker.stop()
        stack.worker.waker.close()
        close = getattr(stack.services.mailer, "close", None)
        if close:
            close()
        stack.services.db.dispose()


def drain_due(worker: Worker, *, horizon: float = 60.0, timeout: float = 30.0) -> None:
    """Run jobs until none is running and none is due within ``horizon`` seconds.

    Unlike ``Worker.drain`` it returns while deferred jobs wait far in the future.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        started = worker.run_available()
        with worker._lock:
            busy = bool(worker._in_flight)
        if not started and not busy:
            with worker.db.session() as session:
                due = session.scalar(select(func.min(Job.run_after)).where(Job.state == "queued"))
            if due is None or due > utcnow() + timedelta(seconds=horizon):
                return
        time.sleep(0.02)
    raise TimeoutError("jobs still due or running after the timeout")


def db_snapshot(stack: Stack) -> dict[str, Any]:
    """Row counts of every table plus the states of reports, recipients and jobs."""
    with stack.services.db.session() as session:
        counts = {
            table.name: session.scalar(select(func.count()).select_from(table)) for table in Base.metadata.sorted_tables
        }
        reports = session.execute(
            select(Report.id, Report.state, Report.updated_at, Report.comment).order_by(Report.id)
        ).all()
        recipients = session.execute(
            select(
                Recipient.id,
                Recipient.state,
                Recipient.notified_at,
                Recipient.release_requested_at,
                Recipient.release_attempted_at,
                Recipient.updated_at,
            ).order_by(Recipient.id)
        ).all()
        jobs = session.execute(
            select(Job.id, Job.kind, Job.ref_id, Job.state, Job.attempts, Job.run_after).order_by(Job.id)
        ).all()
    return {
        "counts": counts,
        "reports": [tuple(r) for r in reports],
        "recipients": [tuple(r) for r in recipients],
        "jobs": [tuple(j) for j in jobs],
    }


def sim_snapshot(stack: Stack) -> list[tuple[Any, ...]]:
    """Every copy the simulator holds, with its state and quarantine."""
    return sorted((c.transaction, c.queue, c.state, c.quarantine) for c in stack.sim.items())
