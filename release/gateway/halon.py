"""Halon adapter: the :class:`Gateway` operations on a 5.x VM or a 6.x ``halon-api`` node.

Only request shapes Halon's own material attests are sent (shared/halon-api.md): a list
(``F``) by explicit ids, and an update (``G``) by explicit ids with one of ``metadata``,
``move: ACTIVE`` or ``action: DELETE``. No answer field of an update is attested, so the
outcome of every change is read back by listing the copies again; an update never decides
from a counter. A 5.x node's message content is read with its file API as web-logui reads it
(:mod:`release.gateway.halon_content`); 6.x has no content API known.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import requests

from release.config import NodeSettings
from release.gateway.base import (
    ContentUnavailable,
    GatewayError,
    GatewayRejected,
    MessageContent,
    NodeHealth,
    QuarantinedCopy,
)
from release.gateway.halon_content import eml_path, read_eml
from release.gateway.halon_items import Marking, ids, read_items
from release.gateway.halon_transport import HalonTransport, Trace, describe

LIST_COMMAND = "F"
UPDATE_COMMAND = "G"
ACTIVE_QUEUE = "ACTIVE"
# check-config's probe: an id no node holds, whose list must come back empty.
PROBE_PREFIX = "sender-fp-release-probe-"


class HalonGateway:
    """One Halon node (either generation), through one :class:`HalonTransport`."""

    def __init__(self, node: NodeSettings, session: requests.Session | None = None, trace: Trace | None = None) -> None:
        self.node = node
        self.name = node.name
        self.marking = Marking.for_node(node)
        self._api = HalonTransport(node, session, trace)

    def __repr__(self) -> str:
        return f"HalonGateway(name={self.name!r}, type={self.node.type!r}, api_url={self._api.base!r})"

    def __enter__(self) -> HalonGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release pooled connections (the worker calls this on shutdown)."""
        self._api.close()

    # -- Gateway protocol -------------------------------------------------------------------

    def find(self, transaction: str, queue: int | None = None) -> list[QuarantinedCopy]:
        """All copies of ``transaction`` still queued on the node; [] when none (expired)."""
        if not transaction:
            return []
        ident: dict[str, Any] = {"transaction": transaction}
        if queue is not None:
            ident["queue"] = queue
        return [c for c in self._list([ident]) if c.transaction == transaction and queue in (None, c.queue)]

    def find_many(self, transactions: Sequence[str]) -> dict[str, list[QuarantinedCopy]]:
        """The copies of several transactions in one list request, by transaction."""
        wanted = [t for t in dict.fromkeys(transactions) if t]
        found: dict[str, list[QuarantinedCopy]] = {t: [] for t in wanted}
        if wanted:
            for copy in self._list([{"transaction": t} for t in wanted]):
                if copy.transaction in found:  # a server answering more than asked is ignored
                    found[copy.transaction].append(copy)
        return found

    def move(self, transaction: str, queues: Sequence[int], quarantine: str) -> int:
        """Move copies to another quarantine (a metadata update of the node's marker key)."""
        return self.move_many([(transaction, q) for q in queues], quarantine)

    def move_many(self, copies: Sequence[tuple[str, int]], quarantine: str) -> int:
        """Re-mark copies of several transactions in one update; returns how many now carry
        the new marker, read back from a fresh list."""
        value = self.marking.value(quarantine)
        wanted = ids(copies)
        if not wanted:
            return 0
        self._update(wanted, {"metadata": {self.marking.key: value}})
        return sum(1 for c in self._held(wanted) if c.quarantine == quarantine)

    def release(self, transaction: str, queue: int) -> int:
        """Move one copy to the active queue, from where Halon delivers it.

        1 when the copy was on the node and the move was accepted; 0 when it was already
        gone (listed first, since an update's answer says nothing attested).
        """
        wanted = ids([(transaction, queue)])
        if not wanted or not self._held(wanted):
            return 0
        return 1 if self._update(wanted, {"move": {"queue": ACTIVE_QUEUE}}) else 0

    def delete(self, transaction: str, queues: Sequence[int]) -> int:
        """Delete copies; returns how many were on the node (0 = already gone).

        A copy still listed after the accepted delete is an error (retried), never "done".
        """
        present = ids([(c.transaction, c.queue) for c in self._held(ids([(transaction, q) for q in queues]))])
        if not present:
            return 0
        self._update(present, {"action": "DELETE"})
        left = self._held(present)
        if left:
            raise GatewayError(f"halon node {self.name}: {len(left)} copies still listed after an accepted delete")
        return len(present)

    def content(self, transaction: str, queue: int, limit: int) -> MessageContent | None:
        """halon5: the first ``limit`` bytes of the ``.eml`` beside the copy's ``.hqf``; None
        when the copy is gone. halon6: :class:`ContentUnavailable` (no content API is known)."""
        if self.node.type == "halon6":
            raise ContentUnavailable(f"halon node {self.name}: Halon 6.x has no known API to read a queued message")
        if limit < 0:
            raise ValueError(f"limit must not be negative, not {limit}")
        what = f"halon node {self.name}: content of {transaction} queue {queue}"
        path = self._eml_path(transaction, queue, what)
        if path is None:
            return None
        found = read_eml(self._api, path, limit, what)
        if found is None and self._eml_path(transaction, queue, what) is not None:
            # Still listed, yet its file is "not found": the path is wrong, not the copy gone.
            raise GatewayError(f"{what}: the node lists the copy but answers that {path} is not found")
        return found

    def health(self) -> NodeHealth:
        """Authentication, the envelope and a list of an id no node holds, which must be empty.

        Changes nothing; reports problems in ``detail`` and never raises.
        """
        started = time.perf_counter()
        probe = PROBE_PREFIX + uuid.uuid4().hex
        try:
            found = self._list([{"transaction": probe}])
        except GatewayRejected as exc:
            latency = (time.perf_counter() - started) * 1000
            return NodeHealth(True, False, latency, str(exc))
        except GatewayError as exc:
            latency = (time.perf_counter() - started) * 1000
            return NodeHealth(False, False, latency, str(exc))
        except Exception as exc:  # a diagnostic reports every failure instead of raising
            latency = (time.perf_counter() - started) * 1000
            return NodeHealth(False, False, latency, self._api.redact(f"unreachable: {describe(exc)}"))
        latency = (time.perf_counter() - started) * 1000
        if found:
            detail = f"a list of the unknown id {probe} answered {len(found)} copies: the node ignores conditions.ids"
            return NodeHealth(True, False, latency, detail)
        return NodeHealth(True, True, latency, f"{self._generation()}: authenticated; list by id answered empty")

    # -- requests ---------------------------------------------------------------------------

    def _generation(self) -> str:
        return f"halon {self.node.halon_version}" if self.node.type == "halon6" else "halon 5.x"

    def _list(self, conditions_ids: list[dict[str, Any]]) -> list[QuarantinedCopy]:
        answer = self._api.call(LIST_COMMAND, {"conditions": {"ids": conditions_ids}})
        if answer is None:  # the API's own 404: nothing by those ids
            return []
        return read_items(answer, self.marking, f"halon node {self.name}: list answer")

    def _eml_path(self, transaction: str, queue: int, what: str) -> str | None:
        """The copy's ``.eml`` path from a list by its id (web-logui's request); None when gone."""
        wanted = ids([(transaction, queue)])
        answer = self._api.call(LIST_COMMAND, {"conditions": {"ids": wanted}}) if wanted else None
        return eml_path(answer, self.marking, transaction, queue, what) if answer is not None else None

    def _held(self, wanted: list[dict[str, Any]]) -> list[QuarantinedCopy]:
        """The named (transaction, queue) copies still listed on the node."""
        if not wanted:
            return []
        keys = {(w["transaction"], w["queue"]) for w in wanted}
        return [c for c in self._list(wanted) if (c.transaction, c.queue) in keys]

    def _update(self, wanted: list[dict[str, Any]], change: dict[str, Any]) -> bool:
        """One update by explicit ids (never empty: an empty condition may match the whole
        queue). True when accepted; False for the API's "not found" (the seed's reading)."""
        return self._api.call(UPDATE_COMMAND, {"conditions": {"ids": wanted}, **change}) is not None
