"""Shared fixtures: a real database per run (SQLite and PostgreSQL), the Halon simulator
over HTTP, a real SMTP server, and the app wired to them."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from release import create_app
from release.config import settings_from_mapping
from release.container import Services
from release.db import migrate
from release.devtools.mailcapture import CaptureServer
from release.devtools.simulator import HalonSimulator, SimulatorServer
from release.jobs.worker import Worker

PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_reason() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}".strip()


@pytest.fixture(scope="session")
def postgres_schema() -> Iterator[str]:
    """A private schema for this test run (runs on one server cannot collide)."""
    reason = _postgres_reason()
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


def make_config(
    database_url: str, simulator: SimulatorServer, smtp_port: int, **sections: dict[str, Any]
) -> dict[str, Any]:
    """A production-shaped configuration (real random secrets, not demo)."""
    config: dict[str, Any] = {
        "app": {"public_url": "https://release.example.test", "secret_key": secrets.token_urlsafe(32)},
        "database": {"url": database_url},
        "links": {"keys": [secrets.token_urlsafe(24)]},
        "captcha": {"provider": "altcha", "altcha_max_number": 2000},
        "smtp": {
            "host": "127.0.0.1",
            "port": smtp_port,
            "security": "none",
            "sender": "Release <release@example.test>",
        },
        "worker": {"backoff_base_seconds": 0.05, "backoff_max_seconds": 0.2, "max_attempts": 5},
        "nodes": [
            {
                "name": "mx1",
                "api_url": simulator.url,
                "username": "release",
                "password": "sim-password-0123",
                "timeout_seconds": 2.0,
            }
        ],
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    return config


@dataclass
class Stack:
    """The app wired to a real database, the simulator and an SMTP server."""

    app: Flask
    services: Services
    worker: Worker
    simulator: SimulatorServer
    smtp: CaptureServer
    client: FlaskClient

    def new_client(self) -> FlaskClient:
        """Another visitor (own cookies), talking HTTPS as the public URL says."""
        client = self.app.test_client()
        client.environ_base["wsgi.url_scheme"] = "https"  # public_url is https: cookies are Secure
        client.environ_base["HTTP_REFERER"] = "https://localhost/"  # as a browser sends same-origin
        return client

    @property
    def sim(self) -> HalonSimulator:
        return self.simulator.sim


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
    settings = settings_from_mapping(make_config(database_url, simulator, smtp_server.port, **stack_sections))
    app = create_app(settings)
    app.config["TESTING"] = True
    services: Services = app.extensions["release"]
    migrate.upgrade(services.db)
    worker = services.build_worker(in_process=True)
    stack = Stack(app, services, worker, simulator, smtp_server, client=None)  # type: ignore[arg-type]
    stack.client = stack.new_client()
    yield stack
    worker.stop()
    worker.waker.close()
    close = getattr(services.mailer, "close", None)
    if close:
        close()
    services.db.dispose()
