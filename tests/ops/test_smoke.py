"""`flask --app app report`: a scripted submission over real HTTP against a served stack,
then the worker locates the copy and mails the recipient, as for a person's report."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server

from release.devtools.mailcapture import CaptureServer
from release.devtools.simulator import SimulatorServer
from release.ops.smoke import parse_report_page
from tests.support.stack import Stack, build_stack, close_stack, drain_due


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def served(database_url: str, simulator: SimulatorServer, smtp_server: CaptureServer) -> Iterator[Stack]:
    """The stack served over HTTP on the port its public URL names (a trial on this machine)."""
    port = free_port()
    stack = build_stack(
        database_url, simulator, smtp_server, testing=False, app={"public_url": f"http://127.0.0.1:{port}"}
    )
    server = make_server("127.0.0.1", port, stack.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield stack
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
    close_stack(stack)


def test_scripted_report_reaches_the_recipient(served: Stack) -> None:
    tx = served.sim.add_message("anna@partner.example", ["bob@example.test"], "Quarterly figures")
    runner = served.app.test_cli_runner()
    link = runner.invoke(args=["sign-link", "--node", "mx1", "--msgid", tx]).output.strip()
    result = runner.invoke(args=["report", "--link", link, "--comment", "Anna from Partner, about the figures"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"reported; status page: {link}")
    drain_due(served.worker)
    [mail] = served.smtp.messages()
    assert mail.rcpt_tos == ("bob@example.test",) and "Quarterly figures" in mail.subject
    again = runner.invoke(args=["report", "--link", link])
    assert again.exit_code == 1 and "reported already" in again.output


def test_bad_link_says_so(served: Stack) -> None:
    link = served.app.test_cli_runner().invoke(args=["sign-link", "--node", "mx1", "--msgid", "x1"]).output.strip()
    forged = link[:-1] + ("1" if link.endswith("0") else "0")  # one hex digit of the signature changed
    result = served.app.test_cli_runner().invoke(args=["report", "--link", forged])
    assert result.exit_code == 1 and "HTTP 400" in result.output


def test_a_page_with_another_provider_is_refused_in_words() -> None:
    page = parse_report_page(
        '<form method="post" action="/report?x"><input name="csrf_token" value="t">'
        '<div class="cf-turnstile" data-sitekey="k"></div><div class="x"></div></form>'
    )
    assert page.other_provider == "turnstile" and page.action == "/report?x" and page.csrf_token == "t"
