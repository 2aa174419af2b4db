"""What admins see of an rspamd node: the nodes page (its relay, checked live), the stats
page and /metrics (the copies the service keeps and their size)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from release.devtools.mailcapture import CaptureServer
from release.devtools.simulator import SimulatorServer
from tests.support.console import VIEWER, open_console
from tests.support.rspamd import build_rspamd_stack, exporter_headers, push, raw_message
from tests.support.stack import Stack, close_stack

TOKEN = secrets.token_urlsafe(24)


@pytest.fixture
def rspamd_stack(
    database_url: str, simulator: SimulatorServer, smtp_server: CaptureServer, relay: CaptureServer
) -> Iterator[Stack]:
    built = build_rspamd_stack(database_url, simulator, smtp_server, relay.port, sections={"metrics": {"token": TOKEN}})
    yield built
    close_stack(built)


def test_nodes_page_checks_the_relay(rspamd_stack: Stack, relay: CaptureServer) -> None:
    page = open_console(rspamd_stack).login(VIEWER).get("/admin/nodes").text
    assert "rspamd" in page and f"smtp://127.0.0.1:{relay.port} (none)" in page
    assert "answered NOOP with 250" in page


def test_stats_and_metrics_show_the_copies_kept_and_their_size(rspamd_stack: Stack) -> None:
    push(rspamd_stack.client, raw_message(body="line of the invoice\n" * 500))
    push(rspamd_stack.client, raw_message(subject="Other"), headers=exporter_headers(recipients=["carol@example.com"]))
    page = open_console(rspamd_stack).login(VIEWER).get("/admin/stats").text
    assert '<span class="fs-5 fw-semibold" data-stored="messages">2</span>' in page
    assert '<span class="fw-semibold" data-stored="copies">3</span>' in page
    assert "3 short, 0 long, 0 released" in page

    metrics = rspamd_stack.client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert 'release_stored_copies{quarantine="short"} 3.0' in metrics
    stored_bytes = next(
        float(row.split()[-1]) for row in metrics.splitlines() if row.startswith("release_stored_bytes ")
    )
    assert 0 < stored_bytes < 5000  # 10 kB of invoice lines and a small mail, compressed
    assert 'release_rspamd_pushes_total{node="mx3",outcome="stored"}' in metrics
