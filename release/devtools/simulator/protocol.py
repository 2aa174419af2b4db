"""Halon's queue API as the simulator reads and answers it (facts: shared/halon-api.md).

Requests: the envelope ``{"command", "program", "payload"}`` (6.x adds a required
``version``), and only the attested payloads — F (QueueList) by ``conditions.ids``; G
(QueueUpdate) by ``conditions.ids`` with exactly one of ``metadata``, ``move`` to ACTIVE or
``action`` DELETE/BOUNCE. Anything else is refused as a protobuf JSON parser refuses it.

Answers: proto3 JSON, defaults left out, 64-bit numbers as strings on 6.x, queue items with
only the fields Halon's own clients read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from release.devtools.simulator import proto3
from release.devtools.simulator.errors import ApiError
from release.devtools.simulator.store import Ids, SimItem

__all__ = ["ApiError", "Change", "Request", "item_json", "read_change", "read_request"]

LIST_COMMAND = "F"
UPDATE_COMMAND = "G"
# Halon's other command letters (protobuf-schemas README): known, but not simulated.
OTHER_COMMANDS = ("D", "E", "I", "J")

# The seed sends move {"queue": 0} for ACTIVE; other queue names (DEFER, HOLD...) and their
# numbers are not needed to release and their numbers are unknown, so the simulator refuses them.
_MOVE = proto3.message({"queue": proto3.enum(["ACTIVE"], {0: "ACTIVE"})})
# Only names are attested for actions; their enum numbers are unknown.
_ACTION = proto3.enum(["DELETE", "BOUNCE"])
_ID = proto3.message({"transaction": proto3.string, "queue": proto3.integer})
# senders/queues conditions are attested for 6.x listing but not implemented here.
_CONDITIONS = proto3.message({"ids": proto3.repeated(_ID), "senders": proto3.unsimulated, "queues": proto3.unsimulated})
_LIST = proto3.message({"conditions": _CONDITIONS})
_UPDATE = proto3.message({"conditions": _CONDITIONS, "metadata": proto3.string_map, "move": _MOVE, "action": _ACTION})
_VERSION = proto3.message({"major": proto3.integer, "minor": proto3.integer})
_ENVELOPE_FIELDS: dict[str, proto3.Reader] = {
    "command": proto3.string,
    "program": proto3.string,
    "payload": lambda value, _path: value,  # read below, by command
}
_ENVELOPE = {
    5: proto3.message(_ENVELOPE_FIELDS),
    6: proto3.message({**_ENVELOPE_FIELDS, "version": _VERSION}),
}


@dataclass(frozen=True)
class Change:
    """What a G asks for: metadata to merge, a release (move to ACTIVE) or a delete."""

    metadata: dict[str, str]
    release: bool = False
    delete: bool = False


@dataclass(frozen=True)
class Request:
    """One parsed API call; ``change`` is None for a list."""

    command: str
    ids: Ids
    payload: dict[str, Any]  # as sent (validated), for subclasses that look at it
    change: Change | None = None


def read_request(body: Any, generation: int) -> Request:
    """Parse and validate a request body for a node of ``generation``; 400 on anything else."""
    envelope = _ENVELOPE[generation](body, "")
    _check_version(envelope, generation)
    if envelope.get("program") != "smtpd":
        raise proto3.refuse("program", f"unknown program {envelope.get('program', '')!r}")
    command = envelope.get("command", "")
    raw = body.get("payload")
    if raw is None:
        raise proto3.refuse("payload", "required")
    if command == LIST_COMMAND:
        return Request(command, _ids(_LIST(raw, "payload")), raw)
    if command == UPDATE_COMMAND:
        update = _UPDATE(raw, "payload")
        return Request(command, _ids(update), raw, _change(update))
    if command in OTHER_COMMANDS:
        raise ApiError(400, f"command: {command!r} is a Halon command the simulator does not implement")
    raise proto3.refuse("command", f"unknown command {command!r}")


def read_change(payload: Any) -> Change:
    """What a G payload asks for (validated again, so subclasses may pass payloads of their own)."""
    return _change(_UPDATE(payload, "payload"))


def item_json(item: SimItem, generation: int) -> dict[str, Any]:
    """A queue item as the node answers it: attested fields only, proto3 JSON."""
    body = proto3.without_defaults(
        {
            "id": {"transaction": item.transaction, "queue": item.queue},
            "sender": _address(item.sender),
            "recipient": _address(item.recipient),
            "subject": item.subject,
            "hqfpath": item.hqfpath if generation == 5 else "",
        }
    )
    if generation == 6 and "id" in body and "queue" in body["id"]:
        body["id"]["queue"] = str(body["id"]["queue"])  # int64 as a JSON string
    if item.metadata:
        body["metadata"] = dict(item.metadata)  # a map keeps every entry, even ""
    return body


def _check_version(envelope: dict[str, Any], generation: int) -> None:
    """6.x requires ``{"major": 6, "minor": N}``; any minor is accepted (what a node does with a
    newer one is unknown). On 5.x ``version`` is already refused as an unknown field."""
    if generation == 5:
        return
    version = envelope.get("version")
    if version is None:
        raise proto3.refuse("version", 'required on 6.x: {"major": 6, "minor": N}')
    if version.get("major") != 6:
        raise proto3.refuse("version.major", f"must be 6, not {version.get('major', 0)!r}")
    minor = version.get("minor", 0)  # proto3: 6.0 leaves minor out
    if minor < 0:
        raise proto3.refuse("version.minor", "must not be negative")


def _ids(payload: dict[str, Any]) -> Ids:
    """``conditions.ids``, required and non-empty so no request can match the whole queue."""
    entries = payload.get("conditions", {}).get("ids", [])
    if not entries:
        raise proto3.refuse("payload.conditions.ids", "required and non-empty (an empty condition matches the queue)")
    ids = Ids()
    for i, entry in enumerate(entries):
        where = f"payload.conditions.ids[{i}]"
        if not entry.get("transaction"):
            raise proto3.refuse(where + ".transaction", "required")
        queue = entry.get("queue", 0)
        if queue < 0:
            raise proto3.refuse(where + ".queue", "must not be negative")
        ids.pairs.append((entry["transaction"], queue or None))  # proto3: queue 0 is "not set"
    return ids


def _change(update: dict[str, Any]) -> Change:
    asked = [key for key in ("metadata", "move", "action") if update.get(key) not in (None, {})]
    if len(asked) != 1:
        raise proto3.refuse("payload", f"give exactly one of metadata, move, action (got {asked or 'none'})")
    if asked == ["metadata"]:
        return Change(update["metadata"])
    if asked == ["move"]:
        return Change({}, release=True)
    return Change({}, delete=True)  # DELETE, or BOUNCE (deletes and bounces to the sender)


def _address(address: str) -> dict[str, str]:
    localpart, _, domain = address.rpartition("@")
    return {"localpart": localpart, "domain": domain} if localpart else {"localpart": address, "domain": ""}
