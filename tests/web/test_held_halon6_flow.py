"""The halon6 "ndr" fallback end to end on the simulator over real HTTP: the node holds a
message and pushes its link, the sender gets the report, follows its link and reports, the
recipients are mailed and the copies move to the long marker."""

from __future__ import annotations

from release.devtools.mailcapture import CaptureServer
from release.devtools.simulator import HalonSimulator, SimulatorServer
from release.jobs.worker import start_in_thread
from tests.support.held import build_stack_with_nodes, push, push_body, report_path_in
from tests.support.stack import close_stack
from tests.support.visitor import submit_report, wait_until


def test_held_message_to_sender_report_to_recipients(database_url: str, smtp_server: CaptureServer) -> None:
    with SimulatorServer(HalonSimulator(generation=6)) as server:
        node = server.node_settings("mx1", sender_notice="ndr")
        assert node.type == "halon6"
        stack = build_stack_with_nodes(database_url, server, smtp_server, node)
        thread = start_in_thread(stack.worker)
        try:
            tx = server.sim.add_message(
                "anna@partner.example", ["alice@example.com", "bob@example.com"], "Quarterly figures",
                quarantine="qid=1day",
            )  # fmt: skip
            assert push(stack.client, push_body(stack, tx)).status_code == 202
            assert wait_until(lambda: len(smtp_server.messages()) == 1, timeout=10)
            (report_mail,) = smtp_server.messages()
            assert report_mail.mail_from == "<>" and report_mail.rcpt_tos == ("anna@partner.example",)
            assert "alice@example.com, bob@example.com" in report_mail.message.as_string()
            # Telling the sender moved nothing: the copies wait in the short hold.
            assert {c.quarantine for c in stack.services.gateways["mx1"].find(tx)} == {"qid=1day"}

            response = submit_report(stack.new_client(), stack, report_path_in(report_mail.message))
            assert response.status_code == 303, response.text
            assert wait_until(lambda: len(smtp_server.messages()) == 3, timeout=10)
            notified = sorted(m.rcpt_tos[0] for m in smtp_server.messages() if m.mail_from != "<>")
            assert notified == ["alice@example.com", "bob@example.com"]
            assert {c.quarantine for c in stack.services.gateways["mx1"].find(tx)} == {"qid=7days"}
            # The gateway's retry of the push changes nothing.
            assert push(stack.client, push_body(stack, tx)).status_code == 200
        finally:
            stack.worker.stop()
            thread.join(timeout=10)
            close_stack(stack)
