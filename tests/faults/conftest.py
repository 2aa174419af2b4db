"""Fixtures for the fault-tolerance tests: an instrumented simulator, a roomy capture SMTP
server, and the service wired to them with the [worker] settings of issue 4."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from release.db import migrate
from release.db.engine import Database
from release.devtools.mailcapture import CaptureServer
from release.devtools.simulator import SimulatorServer
from tests.support.faults import FIGURES, FaultSim, build_fault_stack
from tests.support.stack import Stack, close_stack


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


@pytest.fixture
def fault_stack(database_url: str, fault_simulator: SimulatorServer, mailbox: CaptureServer) -> Iterator[Stack]:
    """The service in this process (web app + a worker the test drives), on both databases."""
    stack = build_fault_stack(database_url, fault_simulator, mailbox)
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
