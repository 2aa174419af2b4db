"""The simulated node's queue: copies of messages in memory, behind one lock.

Lifecycle of a copy (``SimItem.state``):

- ``hold``: in the hold queue; quarantined when ``metadata._quarantineid`` is set.
- ``active``: released (``move queue 0``) and waiting for delivery; still listed, ``hold`` false.
- ``delivered``: Halon delivered it and it left the queue. By default a release delivers at
  once (``auto_deliver=True``), as a real node does within moments; with ``auto_deliver=False``
  copies stay ``active`` until :meth:`SimQueue.deliver_active`.
- ``deleted``: deleted through the API.  ``expired``: removed by Halon's own retention
  cleanup (:meth:`SimQueue.remove`).

Only ``hold`` and ``active`` copies are still in the queue: the list command returns only
those and updates match only those, so an update of a gone copy answers ``affected: 0``.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

State = Literal["hold", "active", "delivered", "deleted", "expired"]
IN_QUEUE: tuple[State, ...] = ("hold", "active")
QUARANTINE_PREFIX = "mailquarantine:"


@dataclass
class SimItem:
    """One recipient's copy in the simulated queue."""

    transaction: str
    queue: int
    sender: str
    recipient: str
    subject: str
    ts: float
    size: int
    senderip: str
    metadata: dict[str, str]
    state: State = "hold"

    @property
    def hold(self) -> bool:
        """True while the copy sits in the hold queue (Halon's ``hold`` flag)."""
        return self.state == "hold"

    @property
    def quarantine(self) -> str | None:
        """``mailquarantine:N`` while held in a quarantine, else None."""
        number = self.metadata.get("_quarantineid")
        return QUARANTINE_PREFIX + number if self.hold and number else None

    def snapshot(self) -> SimItem:
        """A detached copy, so callers cannot change the store behind its lock."""
        return dataclasses.replace(self, metadata=dict(self.metadata))

    def to_json(self) -> dict[str, Any]:
        """The queue item as the API returns it."""
        return {
            "id": {"transaction": self.transaction, "queue": self.queue},
            "ts": self.ts,
            "sender": _split_address(self.sender),
            "recipient": _split_address(self.recipient),
            "subject": self.subject,
            "size": self.size,
            "senderip": self.senderip,
            "saslusername": "",
            "hold": self.hold,
            "metadata": dict(self.metadata),
        }


@dataclass
class Ids:
    """A request's ``conditions.ids``: (transaction, queue) pairs; queue None matches every copy."""

    pairs: list[tuple[str, int | None]] = field(default_factory=list)

    def match(self, item: SimItem) -> bool:
        """True if ``item`` is one of the copies named."""
        return any(t == item.transaction and q in (None, item.queue) for t, q in self.pairs)


class SimQueue:
    """Thread-safe in-memory store of copies; the simulator's HTTP side reads and changes it."""

    def __init__(self, *, auto_deliver: bool = True) -> None:
        self.auto_deliver = auto_deliver
        self._items: list[SimItem] = []
        self._lock = threading.RLock()

    def add_message(
        self,
        sender: str,
        recipients: list[str],
        subject: str,
        quarantine: str | None = "mailquarantine:1",
        ts: float | None = None,
        score: float | None = None,
        transaction: str | None = None,
        metadata: Mapping[str, str] | None = None,
        *,
        sender_ip: str = "192.0.2.10",
        size: int | None = None,
    ) -> str:
        """Queue a message, one copy per recipient (queue ids 1..n); returns the transaction id.

        With a quarantine the copies are held in it; with ``quarantine=None`` they are active.
        """
        if not recipients:
            raise ValueError("a message needs at least one recipient")
        meta = dict(metadata or {})
        if quarantine is not None:
            number = quarantine.removeprefix(QUARANTINE_PREFIX)
            if not number.isdigit():
                raise ValueError(f"not a quarantine id: {quarantine!r}")
            meta["_quarantineid"] = number
        if score is not None:
            meta["_scores.rpd.score"] = str(score)
        transaction = transaction or str(uuid.uuid4())
        when = time.time() if ts is None else ts
        with self._lock:
            for queue, recipient in enumerate(recipients, start=1):
                self._items.append(
                    SimItem(
                        transaction=transaction,
                        queue=queue,
                        sender=sender,
                        recipient=recipient,
                        subject=subject,
                        ts=when,
                        size=size if size is not None else 2048 + len(subject),
                        senderip=sender_ip,
                        metadata=dict(meta),
                        state="hold" if quarantine is not None else "active",
                    )
                )
        return transaction

    def copies(self, transaction: str) -> list[SimItem]:
        """Every copy of a transaction in any state (snapshots), ordered by queue id."""
        with self._lock:
            found = [i.snapshot() for i in self._items if i.transaction == transaction]
        return sorted(found, key=lambda i: i.queue)

    def items(self, state: State | None = None) -> list[SimItem]:
        """All copies (snapshots), optionally only those in one state."""
        with self._lock:
            return [i.snapshot() for i in self._items if state is None or i.state == state]

    def active(self) -> list[SimItem]:
        """Released copies still waiting for delivery (only with ``auto_deliver=False``)."""
        return self.items("active")

    def delivered(self) -> list[SimItem]:
        """Released copies that have been delivered and left the queue."""
        return self.items("delivered")

    def deliver_active(self) -> int:
        """Deliver every active copy (take it out of the queue); returns how many."""
        with self._lock:
            pending = [i for i in self._items if i.state == "active"]
            for item in pending:
                item.state = "delivered"
        return len(pending)

    def remove(self, transaction: str, queue: int | None = None) -> int:
        """Simulate Halon's own retention cleanup: the copies vanish from the queue."""
        with self._lock:
            gone = [
                i
                for i in self._items
                if i.transaction == transaction and queue in (None, i.queue) and i.state in IN_QUEUE
            ]
            for item in gone:
                item.state = "expired"
        return len(gone)

    def page(self, ids: Ids, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """The named copies still in the queue, as the API shows them: one page, and the total."""
        with self._lock:
            matches = [i for i in self._items if i.state in IN_QUEUE and ids.match(i)]
            page = [i.to_json() for i in matches[offset : offset + limit]]
        return page, len(matches)

    def update(self, ids: Ids, metadata: dict[str, str], *, release: bool, delete: bool) -> int:
        """Change the named copies still in the queue (metadata, release, delete); returns how many."""
        with self._lock:
            matches = [i for i in self._items if i.state in IN_QUEUE and ids.match(i)]
            for item in matches:
                item.metadata.update(metadata)
                if release:
                    item.state = "delivered" if self.auto_deliver else "active"
                if delete:
                    item.state = "deleted"
        return len(matches)


def _split_address(address: str) -> dict[str, str]:
    localpart, _, domain = address.rpartition("@")
    return {"localpart": localpart, "domain": domain} if localpart else {"localpart": address, "domain": ""}
