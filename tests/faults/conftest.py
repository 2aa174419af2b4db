"""Fixtures for the fault-tolerance tests: an instrumented simulator, a roomy capture SMTP
server, and the service wired to them with the [worker] settings of issue 4."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from release import create_app
from release.config import settings_from_mapping
from release.container import Services
from release.db import migrate
from release.db.engine import Database
from release.devtools.mailcapture import CaptureServer
from release.devtools.simulator import SimulatorServer
from tests.conftest import Stack, make_config

from .helpers import FIGURES, FaultSim

WORKER = {
    "concurrency": 16,
    "backoff_base_seconds": 0.05,
    "backoff_max_seconds": 0.5,
    "max_attempts": 100,  # an outage must never use up a job's attempts in these tests
    # In-process stacks never lose a worker; a lease shorter than a job can take on a loaded
    # machine would let a second thread re-run it (a duplicate mail, not a lost one). The
    # SIGKILL tests set their own short lease.
    "lease_seconds": 60,
}
NODE_TIMEOUT = 0.5


@pytest.fixture
def fault_simulator() -> Iterator[SimulatorServer]:
    server = SimulatorServer(FaultSim(users={"release": "sim-password-0123"})).start()
    yield server
    server.stop()


@pytest.fixture
def mailbox() -> Iterator[CaptureServer]:
    server = CaptureServer(limit=100_000).start()
    yield server
    server.stop()


def build_stack(database_url: str, simulator: SimulatorServer, smtp: CaptureServer, **sections: Any) -> Stack:
    config = make_config(
        database_url, simulator, smtp.port,
        worker={**WORKER, **sections.pop("worker", {})},
        limits={"notifications_per_recipient_per_day": 1_000_000, "reports_per_ip_per_hour": 1_000_000},
        **sections,
    )  # fmt: skip
    config["nodes"][0]["timeout_seconds"] = NODE_TIMEOUT
    app = create_app(settings_from_mapping(config))
    services: Services = app.extensions["release"]
    migrate.upgrade(services.db)
    worker = services.build_worker(in_process=True)
    stack = Stack(app, services, worker, simulator, smtp, client=None)  # type: ignore[arg-type]
    stack.client = stack.new_client()
    return stack


def close_stack(stack: Stack) -> None:
    stack.worker.stop()
    stack.worker.waker.close()
    close = getattr(stack.services.mailer, "close", None)
    if close:
        close()
    stack.services.db.dispose()


@pytest.fixture
def fault_stack(database_url: str, fault_simulator: SimulatorServer, mailbox: CaptureServer) -> Iterator[Stack]:
    """The service in this process (web app + a worker the test drives), on both databases."""
    stack = build_stack(database_url, fault_simulator, mailbox)
    yield stack
    close_stack(stack)


@pytest.fixture
def db_kind(database_url: str) -> str:
    return "postgres" if database_url.startswith("postgresql") else "sqlite"


@pytest.fixture
def pg_database(postgres_url: str) -> Iterator[str]:
    """A migrated private PostgreSQL schema for worker processes."""
    db = Database(postgres_url)
    try:
        migrate.upgrade(db)
    finally:
        db.dispose()
    yield postgres_url


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    return tmp_path


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("fault-tolerance figures")
    for test, db, name, value in FIGURES:
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        terminalreporter.write_line(f"{test:<28} {db:<9} {name:<44} {shown}")
