"""The one stack builder: the app wired to a real database, the Halon simulator over HTTP, an
SMTP capture server and a worker the test drives. Every suite builds its stacks here."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from release import create_app
from release.config import Settings, settings_from_mapping
from release.container import Services
from release.db import migrate
from release.db.models import Job, utcnow
from release.devtools.mailcapture import CaptureServer
from release.devtools.simulator import HalonSimulator, SimulatorServer
from release.jobs.worker import Worker
from tests.support.config import make_config


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


StackFactory = Callable[..., Stack]


def build_stack(
    database_url: str,
    simulator: SimulatorServer,
    smtp: CaptureServer,
    /,
    *,
    testing: bool = True,
    node_timeout: float | None = None,
    node: dict[str, Any] | None = None,
    more_nodes: Sequence[dict[str, Any]] = (),
    **sections: dict[str, Any],
) -> Stack:
    """A migrated stack on ``database_url`` with extra config ``sections`` (merged into
    make_config's, ``smtp=`` included); ``testing`` sets Flask's TESTING, ``node_timeout`` the node's
    timeout, ``node`` other keys of the node (e.g. ``{"sender_notice": "ndr"}``), ``more_nodes``
    more ``[[nodes]]`` tables after it (e.g. tests/support/rspamd.py's ``rspamd_node``)."""
    config = make_config(database_url, simulator, smtp.port, **sections)
    if node_timeout is not None:
        config["nodes"][0]["timeout_seconds"] = node_timeout
    config["nodes"][0].update(node or {})
    config["nodes"].extend(more_nodes)
    return stack_from_settings(settings_from_mapping(config), simulator, smtp, testing=testing)


def stack_from_settings(
    settings: Settings, simulator: SimulatorServer, smtp: CaptureServer, *, testing: bool = True
) -> Stack:
    """The app for ``settings`` on a migrated database, with a worker the test drives."""
    app = create_app(settings)
    if testing:
        app.config["TESTING"] = True
    services: Services = app.extensions["release"]
    migrate.upgrade(services.db)
    worker = services.build_worker(in_process=True)
    stack = Stack(app, services, worker, simulator, smtp, client=None)  # type: ignore[arg-type]
    stack.client = stack.new_client()
    return stack


def close_stack(stack: Stack) -> None:
    """Stop the worker, close its wake-up channel, the SMTP pool and the database."""
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
