"""Reading Halon's queue list answers, and how each generation marks a held copy's quarantine.

Only fields Halon's own clients read are trusted (shared/halon-api.md): ``id``, ``sender``,
``recipient``, ``subject``, ``metadata``. Proto3 JSON leaves out default values (an empty
``items`` list, a zero ``queue``), so absence means the default; but an item without the id
we would act on is an error that names the field, never a silent "gone". Everything else is
stranger text, bounded and stripped of control characters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from release.config import NodeSettings
from release.gateway.base import GatewayError, QuarantinedCopy
from release.gateway.halon_transport import CONTROL_CHARS

QUARANTINE_PREFIX = "mailquarantine:"
# halon5: Halon's own metadata keys.
QUARANTINE_ID_KEY = "_quarantineid"
RPD_SCORE_KEY = "_scores.rpd.score"
# halon6: what docs/halon/halon6-eod.hsl writes beside the marker (display only).
RECEIVED_KEY = "received"
SENDER_IP_KEY = "senderip"
SCORE_KEY = "score"
TEXT_LIMIT = 1000
ADDRESS_LIMIT = 320
METADATA_LIMIT = 200


@dataclass(frozen=True)
class Marking:
    """How a node says which quarantine holds a copy: one metadata key and its values.

    halon5: ``_quarantineid = "N"`` for ``mailquarantine:N``. halon6: the marker itself,
    ``qid = "7days"`` for ``qid=7days``. Either way a move is a metadata update of one key.
    """

    generation: str
    key: str

    @classmethod
    def for_node(cls, node: NodeSettings) -> Marking:
        if node.type == "halon6":
            return cls("halon6", node.short_quarantine.partition("=")[0])
        return cls("halon5", QUARANTINE_ID_KEY)

    def value(self, quarantine: str) -> str:
        """The metadata value that puts a copy in ``quarantine``."""
        if self.generation == "halon6":
            key, sep, value = quarantine.partition("=")
            if not sep or key != self.key or not value:
                raise ValueError(f"not a {self.key}=... marker: {quarantine!r}")
            return value
        number = quarantine.removeprefix(QUARANTINE_PREFIX)
        if not (quarantine.startswith(QUARANTINE_PREFIX) and number.isascii() and number.isdigit()):
            raise ValueError(f"not a quarantine id: {quarantine!r}")
        return number

    def quarantine(self, metadata: Mapping[str, str]) -> str | None:
        """The quarantine the metadata puts a copy in, or None when it carries no marker."""
        value = metadata.get(self.key, "").strip()
        if not value:
            return None
        if self.generation == "halon6":
            return f"{self.key}={value}"
        return QUARANTINE_PREFIX + value if value.isascii() and value.isdigit() else None


def read_items(answer: Mapping[str, Any], marking: Marking, what: str) -> list[QuarantinedCopy]:
    """The copies in a list (F) answer; a malformed item raises naming its field."""
    items = answer.get("items", [])
    if not isinstance(items, list):
        raise GatewayError(f"{what}: the answer's 'items' is not a list")
    return [_to_copy(item, marking, f"{what}: items[{i}]") for i, item in enumerate(items)]


def _to_copy(item: Any, marking: Marking, where: str) -> QuarantinedCopy:
    if not isinstance(item, Mapping):
        raise GatewayError(f"{where} is not an object")
    ident = item.get("id")
    if not isinstance(ident, Mapping):
        raise GatewayError(f"{where} has no 'id'")
    transaction = ident.get("transaction")
    if not isinstance(transaction, str) or not transaction:
        raise GatewayError(f"{where} has no 'id.transaction'")
    queue = as_int(ident.get("queue", 0), -1)  # proto3 leaves out a zero
    if queue < 0:
        raise GatewayError(f"{where} has no usable 'id.queue' ({ident.get('queue')!r:.40})")
    metadata = _metadata(item.get("metadata"))
    halon6 = marking.generation == "halon6"
    return QuarantinedCopy(
        transaction=transaction,
        queue=queue,
        sender=_address(item.get("sender")),
        recipient=_address(item.get("recipient")),
        subject=_text(item.get("subject"), TEXT_LIMIT),
        received_at=_timestamp(metadata.get(RECEIVED_KEY)) if halon6 else None,
        quarantine=marking.quarantine(metadata),
        sender_ip=_text(metadata.get(SENDER_IP_KEY), 64) if halon6 else "",
        spam_score=_score(metadata.get(SCORE_KEY if halon6 else RPD_SCORE_KEY)),
        metadata=metadata,
    )


def ids(copies: Sequence[tuple[str, int]]) -> list[dict[str, Any]]:
    """Explicit (transaction, queue) ids, deduplicated; never empty for a caller that sends it."""
    return [{"transaction": t, "queue": int(q)} for t, q in dict.fromkeys(copies) if t]


def _address(value: Any) -> str:
    if not isinstance(value, Mapping):
        return ""
    localpart = _text(value.get("localpart"), ADDRESS_LIMIT)
    domain = _text(value.get("domain"), ADDRESS_LIMIT)
    address = f"{localpart}@{domain}" if domain else localpart
    return address[:ADDRESS_LIMIT]


def _metadata(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    result: dict[str, str] = {}
    for key, item in value.items():
        if len(result) >= METADATA_LIMIT:
            break
        if isinstance(key, str) and isinstance(item, str | int | float) and not isinstance(item, bool):
            result[key[:TEXT_LIMIT]] = str(item)[:TEXT_LIMIT]
    return result


def _text(value: Any, limit: int) -> str:
    return CONTROL_CHARS.sub(" ", value)[:limit] if isinstance(value, str) else ""


def _timestamp(value: str | None) -> datetime | None:
    try:
        seconds = float(value) if value is not None else math.nan
        return datetime.fromtimestamp(seconds, UTC) if math.isfinite(seconds) and seconds > 0 else None
    except (ValueError, OverflowError, OSError):
        return None


def _score(value: str | None) -> float | None:
    try:
        score = float(value) if value is not None else None
    except ValueError:
        return None
    return score if score is not None and math.isfinite(score) else None


def as_int(value: Any, default: int) -> int:
    """An integer from JSON, where proto3 encodes 64-bit numbers as decimal strings."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return default
