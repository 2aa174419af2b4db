"""Reading the protobuf-over-JSON request bodies, rejecting what the real API would reject."""

from __future__ import annotations

from typing import Any

from release.devtools.simulator.store import Ids


class ApiError(Exception):
    """An error answer: HTTP ``status`` with ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_ids(payload: dict[str, Any]) -> Ids:
    """``conditions.ids``, required and non-empty so no request can match the whole queue."""
    conditions = payload.get("conditions")
    raw = conditions.get("ids") if isinstance(conditions, dict) else None
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "conditions.ids must be a non-empty list")
    ids = Ids()
    for entry in raw:
        transaction = entry.get("transaction") if isinstance(entry, dict) else None
        if not isinstance(transaction, str) or not transaction:
            raise ApiError(400, "every id needs a transaction")
        queue = entry.get("queue")
        if queue is not None:
            queue = nonnegative(queue, "id.queue")
        ids.pairs.append((transaction, queue))
    return ids


def parse_changes(payload: dict[str, Any]) -> tuple[dict[str, str], bool, bool]:
    """(metadata to merge, release?, delete?) from an update; 400 for anything unsupported."""
    metadata = payload.get("metadata", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ApiError(400, "metadata must map strings to strings")
    release = False
    if "move" in payload:
        move = payload["move"]
        if not isinstance(move, dict) or move.get("queue") not in (0, "ACTIVE"):
            raise ApiError(400, "unsupported move (only queue 0 / ACTIVE)")
        release = True
    delete = False
    if "action" in payload:
        if payload["action"] != "DELETE":
            raise ApiError(400, f"unsupported action {payload['action']!r}")
        delete = True
    if "task" in payload:
        task = payload["task"]
        if not isinstance(task, dict) or task.get("actiontype") not in (0, "DELETE"):
            raise ApiError(400, "unsupported task (only actiontype 0 / DELETE)")
        delete = True
    if not (metadata or release or delete):
        raise ApiError(400, "nothing to update")
    if release and delete:
        raise ApiError(400, "move and delete in one request")
    return metadata, release, delete


def nonnegative(value: Any, name: str) -> int:
    """A non-negative integer (proto3 JSON may send 64-bit numbers as strings)."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ApiError(400, f"{name} must be a non-negative integer")
