"""Previews on Halon nodes, over real HTTP to the simulator: a 5.x node's message is read
through its file API once and kept while the copy is live (purge drops it after); a 6.x
node says plainly that it has no preview; a node that cannot be reached makes the page say
so, never an error page."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from release.core.purge import enforce
from release.db.models import PreviewContent, Recipient, utcnow
from release.devtools.mailcapture import CaptureServer
from release.devtools.simulator import HalonSimulator, SimulatorServer
from release.devtools.simulator.files import FILES_PATH
from tests.support.previews import held_on_halon, phish
from tests.support.stack import Stack, build_stack, close_stack


def notified(stack: Stack, raw: bytes) -> str:
    return held_on_halon(stack, raw)[1]


def file_reads(stack: Stack) -> int:
    return sum(1 for r in stack.sim.requests_log if r.path.startswith(FILES_PATH))


def kept(stack: Stack) -> int:
    with stack.services.db.session() as session:
        return session.scalar(select(func.count()).select_from(PreviewContent)) or 0


def test_a_halon5_message_is_read_once_and_kept_while_its_copy_lives(stack: Stack) -> None:
    token = notified(stack, phish())
    page = stack.new_client().get(f"/release/{token}").text
    assert "The name shows the address security@mybank.example" in page
    assert "statement.pdf.exe" in page and "The text names mybank.example" in page
    reads = file_reads(stack)
    assert reads >= 1 and kept(stack) == 1
    again = stack.new_client().get(f"/release/{token}").text
    assert "statement.pdf.exe" in again and file_reads(stack) == reads  # from what was kept

    # Past retention the copy is deleted and what was kept for its preview goes with it.
    with stack.services.db.session() as session:
        session.execute(update(Recipient).values(expires_at=utcnow() - timedelta(minutes=1)))
        session.commit()
        result = enforce(session, stack.services.gateways, stack.services.settings, utcnow())
    assert result.preview_contents == 1 and kept(stack) == 0


def test_a_halon5_outage_says_so_and_the_next_view_reads_again(stack: Stack) -> None:
    token = notified(stack, phish())
    stack.sim.fail_next(1, status=503)
    page = stack.new_client().get(f"/release/{token}")
    assert page.status_code == 200
    assert "The mail server could not be reached to show this message" in page.text
    assert kept(stack) == 0
    assert "statement.pdf.exe" in stack.new_client().get(f"/release/{token}").text


def test_a_halon6_node_says_it_has_no_preview(database_url: str, smtp_server: CaptureServer) -> None:
    with SimulatorServer(HalonSimulator({"release": "sim-password-0123"}, generation=6)) as server:
        stack = build_stack(database_url, server, smtp_server)
        try:
            token = notified(stack, phish())
            page = stack.new_client().get(f"/release/{token}").text
        finally:
            close_stack(stack)
    assert "Preview not available for this gateway" in page
    assert "statement.pdf.exe" not in page and file_reads(stack) == 0
