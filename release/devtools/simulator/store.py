"""The simulated node's queue: copies of messages in memory, behind one lock.

Lifecycle of a copy (``SimItem.state``), kept here and never shown in an API answer (no
Halon client reads a hold flag or a state from the queue list):

- ``hold``: held; quarantined when it carries its generation's quarantine metadata —
  ``_quarantineid = "N"`` on 5.x (``Quarantine("mailquarantine:N")``), a marker
  ``<key>=<value>`` of the HSL's own on 6.x (queued with ``hold``).
- ``active``: released (``move`` to ACTIVE) and waiting for delivery; still listed.
- ``delivered``: Halon delivered it and it left the queue. By default a release delivers at
  once (``auto_deliver=True``), as a real node does within moments; with ``auto_deliver=False``
  copies stay ``active`` until :meth:`SimQueue.deliver_active`.
- ``deleted``: deleted (or bounced) through the API.  ``expired``: removed by Halon's own
  retention cleanup (:meth:`SimQueue.remove`).

Only ``hold`` and ``active`` copies are still in the queue: the list command returns only
those and updates match only those. On 5.x each message's raw bytes lie beside its ``.hqf``
as an ``.eml`` (:meth:`SimQueue.file`), there while any copy is still queued.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import EllipsisType
from typing import Literal

from release.devtools.simulator.rfc5322 import plain_message

State = Literal["hold", "active", "delivered", "deleted", "expired"]
IN_QUEUE: tuple[State, ...] = ("hold", "active")
QUARANTINE_PREFIX = "mailquarantine:"
QUARANTINE_ID_KEY = "_quarantineid"  # 5.x: the system metadata key Quarantine() sets
SCORE_KEY_5 = "_scores.rpd.score"  # 5.x: the system metadata key of the spam score
SPOOL = "/var/spool/halon/queue"


@dataclass
class SimItem:
    """One recipient's copy in the simulated queue.

    ``ts``, ``size`` and ``senderip`` are the simulator's own bookkeeping (the overview page,
    demo mode); the API never answers them. ``raw`` is the message as received (``size``
    bytes), shared by every copy of the transaction; 5.x serves it as the ``.eml`` file.
    """

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
    generation: int = 5
    marker_key: str = QUARANTINE_ID_KEY  # the metadata key that says which quarantine
    hqfpath: str = ""  # 5.x only
    raw: bytes = b""

    @property
    def emlpath(self) -> str:
        """The ``.eml`` beside the ``.hqf`` (5.x only; halon/web-logui inc/eml.php)."""
        return self.hqfpath[: -len("hqf")] + "eml" if self.hqfpath else ""

    @property
    def hold(self) -> bool:
        """True while the copy is held (internal; no API answer carries it)."""
        return self.state == "hold"

    @property
    def quarantine(self) -> str | None:
        """``mailquarantine:N`` (5.x) or ``key=value`` (6.x) while held in a quarantine, else None."""
        value = self.metadata.get(self.marker_key)
        if not (self.hold and value):
            return None
        return QUARANTINE_PREFIX + value if self.generation == 5 else f"{self.marker_key}={value}"

    def snapshot(self) -> SimItem:
        """A detached copy, so callers cannot change the store behind its lock."""
        return dataclasses.replace(self, metadata=dict(self.metadata))


@dataclass
class Ids:
    """A request's ``conditions.ids``: (transaction, queue) pairs; queue None matches every copy."""

    pairs: list[tuple[str, int | None]] = field(default_factory=list)

    def match(self, item: SimItem) -> bool:
        """True if ``item`` is one of the copies named."""
        return any(t == item.transaction and q in (None, item.queue) for t, q in self.pairs)


class SimQueue:
    """Thread-safe in-memory store of copies; the simulator's HTTP side reads and changes it."""

    def __init__(self, *, generation: int = 5, marker_key: str = "qid", auto_deliver: bool = True) -> None:
        if generation not in (5, 6):
            raise ValueError(f"generation must be 5 or 6, not {generation!r}")
        if not marker_key or marker_key.startswith("_") or "=" in marker_key:
            raise ValueError(f"not a metadata marker key: {marker_key!r}")
        self.generation = generation
        self.marker_key = marker_key
        self.auto_deliver = auto_deliver
        self._items: list[SimItem] = []
        self._lock = threading.RLock()

    @property
    def default_quarantine(self) -> str:
        """Where ``add_message`` holds copies unless told otherwise (the short quarantine)."""
        return "mailquarantine:1" if self.generation == 5 else f"{self.marker_key}=1day"

    def add_message(
        self,
        sender: str,
        recipients: list[str],
        subject: str,
        quarantine: str | None | EllipsisType = ...,
        ts: float | None = None,
        score: float | None = None,
        transaction: str | None = None,
        metadata: Mapping[str, str] | None = None,
        *,
        sender_ip: str = "192.0.2.10",
        raw: bytes | None = None,
    ) -> str:
        """Queue a message, one copy per recipient (queue ids 1..n); returns the transaction id.

        ``raw``: the message's bytes as received; by default a plain-text message built from
        the sender, recipients, subject and ``ts``.

        ``quarantine``: ``...`` for :attr:`default_quarantine`, ``"mailquarantine:N"`` (5.x) or
        ``"<marker_key>=<value>"`` (6.x) to hold the copies there, None to queue them active.
        Report data goes where each generation keeps it: 5.x system metadata for the score; on
        6.x the HSL writes ``received``, ``senderip`` and ``score`` into the metadata itself.
        """
        if not recipients:
            raise ValueError("a message needs at least one recipient")
        quarantine = self.default_quarantine if quarantine is ... else quarantine
        when = time.time() if ts is None else ts
        meta = dict(metadata or {})
        if self.generation == 6:
            meta.update(received=str(int(when)), senderip=sender_ip)
            if score is not None:
                meta["score"] = _number(score)
        elif score is not None:
            meta[SCORE_KEY_5] = str(score)
        if quarantine is not None:
            meta[self._key()] = self._quarantine_value(quarantine)
        transaction = transaction or str(uuid.uuid4())
        data = plain_message(sender, recipients, subject, when) if raw is None else bytes(raw)
        hqfpath = f"{SPOOL}/{transaction[:2]}/{transaction}.hqf" if self.generation == 5 else ""
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
                        size=len(data),
                        senderip=sender_ip,
                        metadata=dict(meta),
                        state="hold" if quarantine is not None else "active",
                        generation=self.generation,
                        marker_key=self._key(),
                        hqfpath=hqfpath,
                        raw=data,
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

    def queued(self, ids: Ids) -> list[SimItem]:
        """The named copies still in the queue (snapshots), in queue order."""
        with self._lock:
            return [i.snapshot() for i in self._items if i.state in IN_QUEUE and ids.match(i)]

    def file(self, path: str) -> bytes | None:
        """5.x: the ``.eml`` at ``path`` while a copy of its message is queued, else None."""
        with self._lock:
            for item in self._items:
                if item.state in IN_QUEUE and item.emlpath and item.emlpath == path:
                    return item.raw
        return None

    def update(self, ids: Ids, metadata: dict[str, str], *, release: bool, delete: bool) -> int:
        """Change the named copies still in the queue; returns how many matched.

        Metadata is MERGED into each copy's map: whether a real node merges or replaces the
        map is unknown (shared/halon-api.md), and merging keeps the report data the HSL wrote.
        """
        with self._lock:
            matches = [i for i in self._items if i.state in IN_QUEUE and ids.match(i)]
            for item in matches:
                item.metadata.update(metadata)
                if release:
                    item.state = "delivered" if self.auto_deliver else "active"
                if delete:
                    item.state = "deleted"
        return len(matches)

    def _key(self) -> str:
        return QUARANTINE_ID_KEY if self.generation == 5 else self.marker_key

    def _quarantine_value(self, quarantine: str) -> str:
        if self.generation == 5:
            number = quarantine.removeprefix(QUARANTINE_PREFIX)
            if quarantine.startswith(QUARANTINE_PREFIX) and number.isdigit():
                return number
            raise ValueError(f"not a 5.x quarantine (mailquarantine:N): {quarantine!r}")
        key, _, value = quarantine.partition("=")
        if key == self.marker_key and value:
            return value
        raise ValueError(f"not a 6.x marker {self.marker_key}=<value>: {quarantine!r}")


def _number(value: float) -> str:
    """A number as HSL prints it: no trailing zeros (90.0 -> "90")."""
    return str(int(value)) if value == int(value) else repr(value)
