"""``mta``: private Postfix + Rspamd (built from docs/rspamd/), started once per session and
pushing to ``push``, a stand-in for the service's push endpoint. Without the binaries the
tests skip with the reason; with REQUIRE_MTA=1 they fail instead."""

from __future__ import annotations

import os
import shutil
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from release.devtools.mailcapture import CaptureServer
from release.devtools.simulator import SimulatorServer
from tests.support.mta import GatewaySettings, Mta, PushReceiver, mta_reason, start_mta
from tests.support.rspamd import NODE, PUSH_PASSWORD, build_rspamd_stack
from tests.support.stack import Stack, close_stack
from tests.support.tls import self_signed

# Session-wide: small enough that a test can send a message over it cheaply.
MAX_SIZE = 200_000


@pytest.fixture(scope="session")
def push_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    """A certificate for 127.0.0.1: Rspamd pushes over verified https, as to the real service."""
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl to make a certificate")
    return self_signed(tmp_path_factory.mktemp("push-tls"))


@pytest.fixture(scope="session")
def push_receiver(push_certificate: tuple[Path, ssl.SSLContext]) -> Iterator[PushReceiver]:
    receiver = PushReceiver(tls=push_certificate[1]).start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def mta(push_receiver: PushReceiver, push_certificate: tuple[Path, ssl.SSLContext]) -> Iterator[Mta]:
    """Postfix and Rspamd for the whole session (Rspamd's start is the slow part)."""
    reason = mta_reason()
    if reason:
        if os.environ.get("REQUIRE_MTA") == "1":
            pytest.fail(reason + " (REQUIRE_MTA=1)")
        pytest.skip(reason)
    settings = GatewaySettings(push_url=f"{push_receiver.url}/gateway/v1/rspamd/mx3", max_size=MAX_SIZE)
    running = start_mta(settings, ca_file=push_certificate[0])
    yield running
    running.stop()


@pytest.fixture
def push(push_receiver: PushReceiver, mta: Mta) -> PushReceiver:
    """The push receiver, answering 200 and with nothing recorded yet."""
    push_receiver.status = 200
    push_receiver.requests.clear()
    return push_receiver


@pytest.fixture
def service(
    database_url: str, simulator: SimulatorServer, smtp_server: CaptureServer, mta: Mta, push: PushReceiver
) -> Iterator[Stack]:
    """The service with the MTA's rspamd node, reachable over HTTP (SQLite and PostgreSQL):
    the rule is pointed at it, and put back afterwards for the session's other tests."""
    stack = build_rspamd_stack(
        database_url, simulator, smtp_server, mta.relay_port,  # Postfix's re-injection listener
        controller_url=mta.controller_url, controller_password=mta.controller_password,
    )  # fmt: skip
    server = make_server("127.0.0.1", 0, stack.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    before = {k: getattr(mta.settings, k) for k in ("public_url", "link_key", "push_password", "push_url", "node")}
    settings = stack.services.settings
    mta.configure(
        public_url=settings.app.public_url,
        link_key=settings.links.keys[0],
        push_password=PUSH_PASSWORD,
        push_url=f"http://127.0.0.1:{server.server_port}/gateway/v1/rspamd/{NODE}",
        node=NODE,
    )
    try:
        yield stack
    finally:
        mta.configure(**before)
        server.shutdown()
        server.server_close()
        close_stack(stack)
