"""Crash between the gateway's release and our commit: the answer is lost (connection reset
after the node acted, or the client timed out while the node still carried it out). The retry
must see the copy gone from the quarantine / active and record "released", never "expired"
or "failed", and the node must have released each copy once."""

from __future__ import annotations

from collections import Counter
from typing import Any

from release.db.models import Recipient
from release.gateway import GatewayError
from tests.support.faults import FaultSim, figures, insert_backlog, recipient_states, request_all_releases
from tests.support.stack import Stack

REPORTS = 16  # x 2 recipients: half of the copies lose the answer, half time out


class AnswerLost:
    """Wraps a gateway: the first release of each copy goes through, then the answer is lost."""

    def __init__(self, inner: Any, only: set[tuple[str, int]]) -> None:
        self.inner = inner
        self.name = inner.name
        self.only = only
        self.lost: Counter[tuple[str, int]] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def release(self, transaction: str, queue: int) -> int:
        affected = self.inner.release(transaction, queue)
        key = (transaction, queue)
        if key in self.only and not self.lost[key]:
            self.lost[key] += 1
            raise GatewayError("connection reset by peer after the request was sent (simulated crash)")
        return int(affected)


def test_release_retry_after_lost_answer_records_released(fault_stack: Stack, db_kind: str) -> None:
    stack = fault_stack
    sim = stack.sim
    assert isinstance(sim, FaultSim)
    db = stack.services.db
    backlog = insert_backlog(db, sim, REPORTS, 2)
    stack.worker.drain(timeout=60)
    copies = backlog.copies(2)
    queue1 = {c for c in copies if c[1] == 1}  # answer lost after the node released it
    queue2 = copies - queue1  # the node stalls past the client timeout, then releases anyway
    gateways = stack.services.gateways
    wrapper = AnswerLost(gateways["mx1"], queue1)
    gateways["mx1"] = wrapper  # type: ignore[assignment]
    sim.set_latency(0)

    requested = request_all_releases(db)
    assert requested == len(copies)
    # Stall the first len(queue2) release requests (G: the node acts, the client times out);
    # the queue-1 ones are released but lose their answer.
    sim.timeout_next(len(queue2), seconds=1.0, command="G")
    stack.worker.drain(timeout=60)

    states = recipient_states(db)
    with db.session() as session:
        wrong = session.query(Recipient).filter(Recipient.state != "released").count()
    calls = sim.calls_per_copy("release")
    effective = sim.effective("release")
    delivered = {(i.transaction, i.queue) for i in sim.delivered()}
    figures(
        "release_crash",
        db_kind,
        [
            ("releases requested", requested),
            ("answers lost after the node released", sum(wrapper.lost.values())),
            ("requests stalled past the client timeout", len(sim.stalled)),
            ("recorded released", states.get("released", 0)),
            ("recorded expired / failed (wrong)", states.get("expired", 0) + states.get("failed", 0)),
            ("release requests sent (max per copy)", max(calls.values())),
            ("copies released twice by the node", sum(1 for c in copies if effective[c] > 1)),
            ("copies never released (lost)", len(copies - delivered)),
        ],
    )
    assert sum(wrapper.lost.values()) == len(queue1)
    assert states == {"released": len(copies)}, states
    assert wrong == 0
    assert delivered == copies
    assert all(effective[c] == 1 for c in copies)
    # A retry lists the copy first: one whose release went through (answer lost) is seen gone
    # and not asked again. (A stalled one may be asked again before the slow node acts.)
    stalled = sim.calls_per_copy("release", stalled=True)
    assert all(calls[c] == 1 for c in queue1 if not stalled[c]), calls
