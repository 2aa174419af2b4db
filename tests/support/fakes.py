"""Fakes for the domain tests: an in-memory gateway node, a settable clock, a crash."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from release.db.models import utcnow
from release.gateway import GatewayError, GatewayRejected, NodeHealth, QuarantinedCopy

NODE = "mx1"
SHORT = "mailquarantine:1"
LONG = "mailquarantine:2"
MSGID = "2d5f1c3e-0000-4000-8000-000000000001"
COMMENT = "Genuine invoice, please release — SECRET-COMMENT-MARKER"


class Crash(Exception):
    """The process died here (raised from a hook, never caught by the flow)."""


class FakeGateway:
    """An in-memory gateway node: copies keyed by (transaction, queue), with switches.

    - ``down``: operation names that raise GatewayError (outage)
    - ``release_matches_nothing``: release reports 0 although the copy is still held
    - ``deliver_on_release``: a released copy leaves the node (delivered); otherwise it stays
      in the active queue (quarantine None)
    - ``after``: a hook per operation, run after its effect (simulate a crash right there)
    - ``calls``: every call, in order
    """

    def __init__(self, name: str = NODE) -> None:
        self.name = name
        self.copies: dict[tuple[str, int], QuarantinedCopy] = {}
        self.calls: list[tuple[str, Any]] = []
        self.down: set[str] = set()
        self.release_matches_nothing = False
        self.reject_release = False
        self.deliver_on_release = True
        self.delivered: list[tuple[str, int]] = []
        self.after: dict[str, Callable[[], None]] = {}

    # -- test set-up ------------------------------------------------------------------------

    def hold(self, transaction: str, queue: int, recipient: str, quarantine: str | None = SHORT) -> None:
        self.copies[(transaction, queue)] = QuarantinedCopy(
            transaction=transaction,
            queue=queue,
            sender="offers@spammy.example",
            recipient=recipient,
            subject="Invoice 42 from www.example.com",
            received_at=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
            quarantine=quarantine,
            spam_score=7.5,
        )

    def lose(self, transaction: str, queue: int | None = None) -> None:
        """The gateway's own retention removed the copy (or all copies)."""
        for key in [k for k in self.copies if k[0] == transaction and (queue is None or k[1] == queue)]:
            del self.copies[key]

    def count(self, op: str) -> int:
        return sum(1 for name, _ in self.calls if name == op)

    def quarantine_of(self, transaction: str, queue: int) -> str | None:
        return self.copies[(transaction, queue)].quarantine

    def _enter(self, op: str, args: Any) -> None:
        self.calls.append((op, args))
        if op in self.down:
            raise GatewayError(f"{op}: connection refused (simulated)")

    def _leave(self, op: str) -> None:
        hook = self.after.get(op)
        if hook is not None:
            hook()

    # -- the Gateway protocol ---------------------------------------------------------------

    def find(self, transaction: str, queue: int | None = None) -> list[QuarantinedCopy]:
        self._enter("find", (transaction, queue))
        found = [c for (t, q), c in sorted(self.copies.items()) if t == transaction and queue in (None, q)]
        self._leave("find")
        return found

    def find_many(self, transactions: Sequence[str]) -> dict[str, list[QuarantinedCopy]]:
        self.calls.append(("find_many", tuple(transactions)))  # and one "find" per transaction
        return {t: self.find(t) for t in transactions}

    def move_many(self, copies: Sequence[tuple[str, int]], quarantine: str) -> int:
        self.calls.append(("move_many", tuple(copies)))
        by_transaction: dict[str, list[int]] = {}
        for transaction, queue in copies:
            by_transaction.setdefault(transaction, []).append(queue)
        return sum(self.move(t, queues, quarantine) for t, queues in by_transaction.items())

    def move(self, transaction: str, queues: Sequence[int], quarantine: str) -> int:
        self._enter("move", (transaction, tuple(queues), quarantine))
        moved = 0
        for q in queues:
            copy = self.copies.get((transaction, q))
            if copy is not None and copy.quarantine is not None:
                self.copies[(transaction, q)] = replace(copy, quarantine=quarantine)
                moved += 1
        self._leave("move")
        return moved

    def release(self, transaction: str, queue: int) -> int:
        self._enter("release", (transaction, queue))
        if self.reject_release:
            raise GatewayRejected("release: HTTP 403 (simulated)")
        copy = self.copies.get((transaction, queue))
        if copy is None or copy.quarantine is None or self.release_matches_nothing:
            self._leave("release")
            return 0
        if self.deliver_on_release:
            del self.copies[(transaction, queue)]
        else:
            self.copies[(transaction, queue)] = replace(copy, quarantine=None)
        self.delivered.append((transaction, queue))
        self._leave("release")
        return 1

    def delete(self, transaction: str, queues: Sequence[int]) -> int:
        self._enter("delete", (transaction, tuple(queues)))
        gone = 0
        for q in queues:
            if self.copies.pop((transaction, q), None) is not None:
                gone += 1
        self._leave("delete")
        return gone

    def health(self) -> NodeHealth:
        self._enter("health", ())
        return NodeHealth(reachable=True, authenticated=True, latency_ms=0.1)


class Clock:
    """A settable clock for the flow (retention and expiry decisions)."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now
