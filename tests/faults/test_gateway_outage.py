"""Gateway outage: the backlog arrives while the node answers 503 and stalls past the client
timeout, then the node recovers. Nothing may be lost, and no copy moved twice except where a
timed-out move (which the node still carried out) had to be repeated."""

from __future__ import annotations

import os
import time

from release.core.context import Context
from tests.support.faults import (
    FaultSim,
    count_mail,
    figures,
    insert_backlog,
    job_states,
    recipient_states,
    report_states,
)
from tests.support.stack import Stack

# The issue asks 1,000 reports. The in-process service drains ~7-10 reports/s on this 2-core
# machine, so 1,000 takes ~140 s on PostgreSQL alone: the default keeps the folder near 3 min,
# FAULTS_OUTAGE_REPORTS_PG=1000 runs the full size (CI sets 1,000 on both databases).
REPORTS = {"postgres": int(os.environ.get("FAULTS_OUTAGE_REPORTS_PG", "300")),
           "sqlite": int(os.environ.get("FAULTS_OUTAGE_REPORTS_SQLITE", "100"))}  # fmt: skip
RECIPIENTS = 2


def test_gateway_outage_loses_nothing(fault_stack: Stack, db_kind: str) -> None:
    stack = fault_stack
    sim = stack.sim
    assert isinstance(sim, FaultSim)
    db = stack.services.db
    n = REPORTS[db_kind]
    failures, stalls = n, 20
    # The node is down for the first `failures` requests (503), then stalls `stalls` requests
    # for longer than the client waits (0.5 s), then 503s again for a while, then recovers.
    sim.fail_next(failures // 2)
    sim.timeout_next(stalls, seconds=1.2)
    sim.fail_next(failures - failures // 2)
    backlog = insert_backlog(db, sim, n, RECIPIENTS)

    started = time.perf_counter()
    stack.worker.drain(timeout=170)
    elapsed = time.perf_counter() - started

    reports = report_states(db)
    recipients = recipient_states(db)
    jobs = job_states(db)
    mail = count_mail([stack.smtp], backlog.addresses)
    copies = backlog.copies(RECIPIENTS)
    moves_all = sim.calls_per_copy("move")
    moves_stalled = sim.calls_per_copy("move", stalled=True)
    # Moved more than once, not counting repeats of a move whose answer timed out.
    moved_twice = sum(1 for c in copies if moves_all[c] - moves_stalled[c] > 1)
    never_moved = sum(1 for c in copies if moves_all[c] == 0)
    in_long = sum(1 for c in sim.items() if c.quarantine == "mailquarantine:2")
    lost = n - reports.get("notified", 0)
    figures(
        "gateway_outage",
        db_kind,
        [
            ("reports", n),
            ("copies", len(copies)),
            ("503 answers injected", failures),
            ("stalled requests (> client timeout)", len(sim.stalled)),
            ("reports lost (not notified)", lost),
            ("recipients not mailed", mail.missing),
            ("mail duplicates (Message-ID, rcpt)", mail.duplicates),
            ("copies moved twice (excl. timeout repeats)", moved_twice),
            (
                "copies whose timed-out move was repeated",
                sum(1 for c in copies if moves_stalled[c] and moves_all[c] > 1),
            ),
            ("copies in the long quarantine", in_long),
            ("dead jobs", jobs.get("dead", 0)),
            ("seconds to drain", round(elapsed, 1)),
            ("reports/s through the outage", round(n / elapsed, 1)),
        ],
    )
    assert reports == {"notified": n}, reports
    assert recipients == {"notified": n * RECIPIENTS}, recipients
    assert lost == 0 and mail.missing == 0 and mail.duplicates == 0 and mail.recipients_mailed_twice == 0
    assert never_moved == 0 and moved_twice == 0
    assert in_long == len(copies)
    assert jobs.get("dead", 0) == 0
    # The outage really was hit: every injected 503 and stall was answered to the worker.
    assert sum(1 for r in sim.requests_log if r.status == 503) == failures
    assert len(sim.stalled) == stalls
    assert isinstance(stack.services.ctx, Context)
