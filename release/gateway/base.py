"""The gateway interface the flow depends on, and the values it exchanges.

A gateway keeps quarantined copies of rejected messages, one per recipient. The flow only
needs to find them, move them between quarantines, release and delete them; anything
vendor-specific stays behind this protocol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


class GatewayError(Exception):
    """The gateway could not be asked (network, TLS, 5xx, timeout): try again later."""


class GatewayRejected(GatewayError):
    """The gateway refused the request itself (auth, bad request): retrying will not help."""


class DeliveryUncertain(GatewayError):
    """A release may have reached delivery before it was interrupted: sending it again could
    deliver it twice, so no retry may; an admin checks the relay's log (docs/rspamd/)."""


@dataclass(frozen=True)
class QuarantinedCopy:
    """One recipient's copy of a rejected message, as the gateway holds it."""

    transaction: str
    queue: int
    sender: str
    recipient: str
    subject: str
    received_at: datetime | None  # None where the node does not record it (halon5)
    # The node's quarantine name: "mailquarantine:N" (halon5) or the marker "key=value"
    # (halon6) the copy carries; None when it carries none (released, or not ours).
    quarantine: str | None
    sender_ip: str = ""
    spam_score: float | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


class ContentUnavailable(Exception):
    """This gateway cannot hand out a held message's bytes (halon6: no content API is known;
    a node whose previews an admin switched off). Not an outage: asking again will not help."""


@dataclass(frozen=True)
class MessageContent:
    """The start of a held message's raw bytes, for the recipient's preview."""

    data: bytes  # at most the ``limit`` asked for: the message's first bytes
    size: int  # the whole message's size, so a caller knows when ``data`` is only the start
    # The filter's own verdicts recorded with the message (an rspamd node's symbols).
    verdicts: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return len(self.data) >= self.size


@dataclass(frozen=True)
class NodeHealth:
    """Result of a cheap authenticated call, for check-config and the admin console."""

    reachable: bool
    authenticated: bool
    latency_ms: float
    detail: str = ""


class Gateway(Protocol):
    """Operations on one gateway node. Every method may raise :class:`GatewayError`."""

    name: str

    def find(self, transaction: str, queue: int | None = None) -> list[QuarantinedCopy]:
        """All copies of the transaction still on the node (optionally one recipient's)."""
        ...

    def find_many(self, transactions: Sequence[str]) -> dict[str, list[QuarantinedCopy]]:
        """:meth:`find` for several transactions in one request (the worker's batches)."""
        ...

    def move(self, transaction: str, queues: Sequence[int], quarantine: str) -> int:
        """Move copies to ``quarantine`` (a configured quarantine name); returns how many
        now carry it."""
        ...

    def move_many(self, copies: Sequence[tuple[str, int]], quarantine: str) -> int:
        """:meth:`move` for (transaction, queue) copies of several transactions in one request."""
        ...

    def release(self, transaction: str, queue: int) -> int:
        """Put one copy back into delivery (active queue); 1 when done, 0 when it was gone."""
        ...

    def delete(self, transaction: str, queues: Sequence[int]) -> int:
        """Delete copies; returns how many were there (0 = already gone)."""
        ...

    def content(self, transaction: str, queue: int, limit: int) -> MessageContent | None:
        """The raw message behind one copy, its first ``limit`` bytes at most; None when the
        copy is gone. Raises :class:`ContentUnavailable` where the gateway has no way to
        read it."""
        ...

    def health(self) -> NodeHealth:
        """Check reachability and credentials."""
        ...
