"""SMTP outage: the mail server refuses connections, then comes back on the same port.
Every recipient is mailed once; duplicates are counted by (Message-ID, recipient)."""

from __future__ import annotations

import threading
import time

from release.db.models import Job
from release.devtools.mailcapture import CaptureServer
from tests.support.faults import count_mail, figures, insert_backlog, job_states, recipient_states, report_states
from tests.support.stack import Stack

REPORTS, RECIPIENTS = 60, 2
OUTAGE_SECONDS = 2.0


def test_smtp_outage_mails_everyone_once(fault_stack: Stack, db_kind: str) -> None:
    stack = fault_stack
    db = stack.services.db
    port = stack.smtp.port
    stack.smtp.stop()  # connection refused from now on
    backlog = insert_backlog(db, stack.sim, REPORTS, RECIPIENTS)
    restarted: list[CaptureServer] = []

    def restart() -> None:
        restarted.append(CaptureServer(port=port, limit=100_000).start())

    timer = threading.Timer(OUTAGE_SECONDS, restart)
    timer.start()
    started = time.perf_counter()
    try:
        stack.worker.drain(timeout=90)
    finally:
        timer.join()
    elapsed = time.perf_counter() - started
    try:
        with db.session() as session:
            smtp_failures = session.query(Job).filter(Job.kind == "notify", Job.attempts > 1).count()
        mail = count_mail([stack.smtp, *restarted], backlog.addresses)
        reports, recipients, jobs = report_states(db), recipient_states(db), job_states(db)
        figures(
            "smtp_outage",
            db_kind,
            [
                ("recipients", len(backlog.addresses)),
                ("outage seconds (connection refused)", OUTAGE_SECONDS),
                ("notify jobs retried after refusal", smtp_failures),
                ("recipients not mailed (lost)", mail.missing),
                ("duplicates (Message-ID, rcpt)", mail.duplicates),
                ("recipients mailed twice", mail.recipients_mailed_twice),
                ("dead jobs", jobs.get("dead", 0)),
                ("seconds to drain", round(elapsed, 1)),
            ],
        )
        assert smtp_failures > 0, "the outage was not hit"
        assert reports == {"notified": REPORTS}, reports
        assert recipients == {"notified": REPORTS * RECIPIENTS}, recipients
        assert mail.missing == 0 and mail.duplicates == 0 and mail.recipients_mailed_twice == 0
        assert mail.total == len(backlog.addresses)
        assert jobs.get("dead", 0) == 0
    finally:
        for server in restarted:
            server.stop()
