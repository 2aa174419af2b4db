"""``mta``: private Postfix + Rspamd (built from docs/rspamd/), started once per session and
pushing to ``push``, a stand-in for the service's push endpoint. Without the binaries the
tests skip with the reason; with REQUIRE_MTA=1 they fail instead."""

from __future__ import annotations

import os
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mta import GatewaySettings, Mta, PushReceiver, mta_reason, start_mta
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
