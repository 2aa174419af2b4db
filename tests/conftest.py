"""Shared fixtures: a real database per run (SQLite and PostgreSQL), the Halon simulator
over HTTP, a real SMTP server, and the app wired to them (built by tests/support/stack.py)."""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from release.db import migrate
from release.db.engine import Database
from release.devtools.demo import DemoRuntime, start_demo
from release.devtools.mailcapture import CaptureServer
from release.devtools.simulator import HalonSimulator, SimulatorServer
from tests.support.console import Console, open_console
from tests.support.database import PG_ADMIN_URL, REDIS_URL, postgres_reason, redis_reason
from tests.support.rspamd import Controller, build_rspamd_stack
from tests.support.stack import Stack, StackFactory, build_stack, close_stack


@pytest.fixture(scope="session")
def postgres_schema() -> Iterator[str]:
    """A private schema for this test run (runs on one server cannot collide)."""
    reason = postgres_reason()
    if reason:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(reason + " (REQUIRE_POSTGRES=1)")
        pytest.skip(reason)
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield schema
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def postgres_url(postgres_schema: str) -> Iterator[str]:
    """An empty PostgreSQL database (a private schema); its tables are dropped afterwards."""
    url = PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{url}?options=-csearch_path%3D{postgres_schema}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (postgres_schema,)).fetchall()
        for (table,) in tables:
            conn.execute(f'DROP TABLE IF EXISTS {postgres_schema}."{table}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind: every test using it runs on SQLite and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'release.sqlite3'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    """The Halon simulator, over real HTTP."""
    server = SimulatorServer(HalonSimulator(users={"release": "sim-password-0123"})).start()
    yield server
    server.stop()


@pytest.fixture
def smtp_server() -> Iterator[CaptureServer]:
    """A real SMTP server (aiosmtpd) that keeps what it receives."""
    server = CaptureServer().start()
    yield server
    server.stop()


@pytest.fixture
def relay() -> Iterator[CaptureServer]:
    """A real SMTP server standing in for an rspamd node's re-injection relay."""
    server = CaptureServer().start()
    yield server
    server.stop()


@pytest.fixture
def rspamd_controller() -> Iterator[Controller]:
    """A stand-in Rspamd controller over real HTTP (learn-ham, /stat)."""
    server = Controller().start()
    yield server
    server.stop()


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A migrated database of each kind, for tests below the web app (a module may define its own)."""
    database = Database(database_url)
    migrate.upgrade(database)
    yield database
    database.dispose()


@pytest.fixture
def stack_sections() -> dict[str, dict[str, Any]]:
    """Extra config sections for ``stack``; a test module overrides this fixture to set its own."""
    return {}


@pytest.fixture
def stack(
    database_url: str,
    simulator: SimulatorServer,
    smtp_server: CaptureServer,
    stack_sections: dict[str, dict[str, Any]],
) -> Iterator[Stack]:
    """The whole service (web app + a worker driven by the test) on real parts."""
    built = build_stack(database_url, simulator, smtp_server, **stack_sections)
    yield built
    close_stack(built)


@pytest.fixture
def make_stack(database_url: str, simulator: SimulatorServer, smtp_server: CaptureServer) -> Iterator[StackFactory]:
    """Build stacks on this test's database with extra config sections (merged), e.g.
    ``make_stack(limits={"reports_per_ip_per_hour": 3})``, and build_stack's other keywords
    (``node=``, ``more_nodes=``...); several share the database."""
    built: list[Stack] = []

    def build(**sections: Any) -> Stack:
        built.append(build_stack(database_url, simulator, smtp_server, **sections))
        return built[-1]

    yield build
    for one in built:
        close_stack(one)


@pytest.fixture
def make_rspamd_stack(
    database_url: str, simulator: SimulatorServer, smtp_server: CaptureServer, relay: CaptureServer
) -> Iterator[Callable[..., Stack]]:
    """Build stacks whose only node is the rspamd node ``mx3`` (build_rspamd_stack's
    keywords: ``sections=`` for config sections, anything else for the node's keys)."""
    built: list[Stack] = []

    def build(**keys: Any) -> Stack:
        built.append(build_rspamd_stack(database_url, simulator, smtp_server, relay.port, **keys))
        return built[-1]

    yield build
    for one in built:
        close_stack(one)


@pytest.fixture
def console(stack: Stack) -> Console:
    """The admin console on ``stack``, with an admin and a viewer account."""
    return open_console(stack)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[DemoRuntime]:
    """The demo runtime on a free port, serving from a daemon thread; always stopped."""
    runtime = start_demo(host="127.0.0.1", port=0, instance=tmp_path / "instance")
    thread = threading.Thread(target=runtime.serve_forever, name="demo-http", daemon=True)
    try:
        thread.start()
        yield runtime
    finally:
        runtime.stop()
        thread.join(timeout=10)


@pytest.fixture
def redis_url() -> str:
    """The test Redis; skips with the reason where none answers (fails under REQUIRE_REDIS=1)."""
    reason = redis_reason()
    if reason:
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail(reason + " (REQUIRE_REDIS=1)")
        pytest.skip(reason)
    return REDIS_URL
