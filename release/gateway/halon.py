"""Halon adapter: the :class:`Gateway` operations over Halon's HTTP API (5.3 and later).

Every call is ``POST {api_url}/api/protobuf`` with a JSON envelope
``{"command": ..., "program": "smtpd", "payload": {...}}`` and HTTP Basic auth. Answers come
from a mail gateway we do not control, so every field is read defensively: proto3 JSON may
omit zero values and may encode 64-bit integers as strings, and metadata is stranger text.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import requests

from release.config import NodeSettings
from release.gateway.base import GatewayError, GatewayRejected, NodeHealth, QuarantinedCopy

PROTOBUF_PATH = "/api/protobuf"
LICENSE_PATH = "/api/5.3.0/license"
PROGRAM = "smtpd"
LIST_COMMAND = "F"
UPDATE_COMMAND = "G"
PAGE_SIZE = 1000
# A transaction has one item per recipient; this bounds a misbehaving server's paging.
MAX_PAGES = 100
ACTIVE_QUEUE = 0
QUARANTINE_PREFIX = "mailquarantine:"
SCORE_KEY = "_scores.rpd.score"
QUARANTINE_KEY = "_quarantineid"
ERROR_DETAIL_LIMIT = 300
# Bounds on stranger text copied out of the gateway (the flow bounds again where it shows it).
TEXT_LIMIT = 1000
ADDRESS_LIMIT = 320
METADATA_LIMIT = 200
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
POOL_SIZE = 64
USER_AGENT = "sender-fp-release"
EPOCH = datetime.fromtimestamp(0, UTC)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _pooled_session() -> requests.Session:
    """A session whose connection pool covers every worker thread (no reconnect churn), and
    which ignores proxy/netrc environment lookups on each call (the node is configured)."""
    session = requests.Session()
    session.trust_env = False
    adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=POOL_SIZE)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class HalonGateway:
    """One Halon node, reached through one ``requests.Session`` (connection reuse, auth, TLS)."""

    def __init__(self, node: NodeSettings, session: requests.Session | None = None) -> None:
        self.node = node
        self.name = node.name
        self._base = node.api_url.rstrip("/")
        self._session = session or _pooled_session()
        self._session.auth = (node.username, node.password)
        # Passed on every call too: requests lets REQUESTS_CA_BUNDLE override a session's verify.
        self._verify: str | bool = node.ca_file or node.verify_tls
        self._session.verify = self._verify
        self._session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})

    def __repr__(self) -> str:
        return f"HalonGateway(name={self.name!r}, api_url={self._base!r})"

    def __enter__(self) -> HalonGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release pooled connections (the worker calls this on shutdown)."""
        self._session.close()

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
        """The copies of several transactions in one list request (paged), by transaction."""
        wanted = [t for t in dict.fromkeys(transactions) if t]
        found: dict[str, list[QuarantinedCopy]] = {t: [] for t in wanted}
        if wanted:
            for copy in self._list([{"transaction": t} for t in wanted]):
                if copy.transaction in found:  # a server answering more than asked is ignored
                    found[copy.transaction].append(copy)
        return found

    def _list(self, ids: list[dict[str, Any]]) -> list[QuarantinedCopy]:
        copies: list[QuarantinedCopy] = []
        offset = 0
        for _ in range(MAX_PAGES):
            payload = {"conditions": {"ids": ids}, "paging": {"offset": offset, "limit": PAGE_SIZE}}
            body = self._call(LIST_COMMAND, payload)
            if body is None:  # 404 from the API: nothing by those ids
                return []
            items = body.get("items")
            items = items if isinstance(items, list) else []
            copies.extend(copy for copy in map(_to_copy, items) if copy)
            offset += len(items)
            paging = body.get("paging")
            total = _as_int(paging.get("total") if isinstance(paging, Mapping) else None, offset)
            if not items or offset >= total:
                break
        return copies

    def move(self, transaction: str, queues: Sequence[int], quarantine: str) -> int:
        """Move copies to another quarantine by rewriting their ``_quarantineid`` metadata."""
        return self.move_many([(transaction, q) for q in queues], quarantine)

    def move_many(self, copies: Sequence[tuple[str, int]], quarantine: str) -> int:
        """Move copies of several transactions in one update request; returns how many matched."""
        number = quarantine.removeprefix(QUARANTINE_PREFIX)
        if not (number.isascii() and number.isdigit()):
            raise ValueError(f"not a quarantine id: {quarantine!r}")
        return self._update(copies, {"metadata": {QUARANTINE_KEY: number}})

    def release(self, transaction: str, queue: int) -> int:
        """Move one copy to the active queue, from where Halon delivers it."""
        return self._update([(transaction, queue)], {"move": {"queue": ACTIVE_QUEUE}})

    def delete(self, transaction: str, queues: Sequence[int]) -> int:
        """Delete copies with ``"action": "DELETE"``, the one shape Halon's material attests."""
        return self._update([(transaction, q) for q in queues], {"action": "DELETE"})

    def health(self) -> NodeHealth:
        """One authenticated GET of the license; reports problems in ``detail``, never raises."""
        started = time.perf_counter()
        try:
            response = self._session.get(
                self._base + LICENSE_PATH,
                timeout=self.node.timeout_seconds,
                verify=self._verify,
                allow_redirects=False,
            )
        except Exception as exc:  # a diagnostic reports every failure instead of raising
            latency = (time.perf_counter() - started) * 1000
            return NodeHealth(False, False, latency, self._redact(f"unreachable: {_describe(exc)}"))
        latency = (time.perf_counter() - started) * 1000
        status = response.status_code
        if status == 200:
            return NodeHealth(True, True, latency, "HTTP 200")
        detail = f"HTTP {status}"
        if status in (401, 403):
            detail += " (check the API user name and password)"
        reason = _error_text(response)
        return NodeHealth(True, False, latency, self._redact(f"{detail}: {reason}" if reason else detail))

    # -- transport --------------------------------------------------------------------------

    def _update(self, copies: Sequence[tuple[str, int]], change: Mapping[str, Any]) -> int:
        """Send one update ("G") for full ids; an empty id list is never sent (it could match all)."""
        pairs = [(t, int(q)) for t, q in dict.fromkeys(copies) if t]
        if not pairs:
            return 0
        ids = [{"transaction": t, "queue": q} for t, q in pairs]
        body = self._call(UPDATE_COMMAND, {"conditions": {"ids": ids}, **change})
        if body is None:
            return 0
        affected = body.get("affected", 0)  # proto3 JSON leaves out a zero
        value = _as_int(affected, -1)
        if value < 0:
            raise GatewayError(f"halon node {self.name}: update answer has no usable 'affected' ({affected!r:.40})")
        return value

    def _call(self, command: str, payload: Mapping[str, Any]) -> dict[str, Any] | None:
        """POST one command; the decoded JSON object, or None for an API "not found"."""
        envelope = {"command": command, "program": PROGRAM, "payload": payload}
        what = f"halon node {self.name}: command {command}"
        try:
            response = self._session.post(
                self._base + PROTOBUF_PATH,
                data=json.dumps(envelope).encode("utf-8"),
                headers={"Content-Type": JSON_CONTENT_TYPE},
                timeout=self.node.timeout_seconds,
                verify=self._verify,
                allow_redirects=False,  # a redirect means a wrong api_url; never replay the body
            )
        except requests.Timeout:
            raise GatewayError(f"{what}: no answer within {self.node.timeout_seconds:g}s") from None
        except requests.RequestException as exc:
            raise GatewayError(self._redact(f"{what}: request failed: {_describe(exc)}")) from None
        status = response.status_code
        if status == 200:
            try:
                body = response.json()
            except ValueError:
                raise GatewayError(f"{what}: HTTP 200 but the body is not JSON") from None
            if not isinstance(body, dict):
                raise GatewayError(f"{what}: HTTP 200 but the body is not a JSON object")
            return body
        reason = self._redact(_error_text(response))
        message = f"{what}: HTTP {status}" + (f": {reason}" if reason else "")
        if status in (408, 429) or status >= 500:
            raise GatewayError(message)
        if status == 404 and _is_json(response):
            return None
        if status == 404:
            # Not the API's own "not found" (no JSON): most likely api_url points elsewhere.
            raise GatewayRejected(f"{message} (no Halon API at {self._base}{PROTOBUF_PATH}? check api_url)")
        raise GatewayRejected(message)

    def _redact(self, text: str) -> str:
        """Remove the node password from text that may end up in logs or on an admin page."""
        secret = self.node.password
        return text.replace(secret, "***") if secret else text


# -- mapping queue items ------------------------------------------------------------------------


def _to_copy(item: Any) -> QuarantinedCopy | None:
    """Map one queue item; None when it has no usable id (nothing could be done with it)."""
    if not isinstance(item, Mapping):
        return None
    ident = item.get("id")
    if not isinstance(ident, Mapping):
        return None
    transaction = ident.get("transaction")
    queue = _as_int(ident.get("queue", 0), -1)
    if not isinstance(transaction, str) or not transaction or queue < 0:
        return None
    metadata = _metadata(item.get("metadata"))
    return QuarantinedCopy(
        transaction=transaction,
        queue=queue,
        sender=_address(item.get("sender")),
        recipient=_address(item.get("recipient")),
        subject=_text(item.get("subject"), TEXT_LIMIT),
        received_at=_timestamp(item.get("ts")),
        quarantine=_quarantine(metadata, item.get("hold")),
        size=max(_as_int(item.get("size"), 0), 0),
        sender_ip=_text(item.get("senderip"), 64),
        spam_score=_score(metadata.get(SCORE_KEY)),
        metadata=metadata,
    )


def _quarantine(metadata: Mapping[str, str], hold: Any) -> str | None:
    """The copy's quarantine, or None when it is not (or no longer) held in one."""
    number = metadata.get(QUARANTINE_KEY, "").strip()
    if not (number.isascii() and number.isdigit()) or hold is False:  # hold: false = released, on its way out
        return None
    return QUARANTINE_PREFIX + number


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
    return _CONTROL.sub(" ", value)[:limit] if isinstance(value, str) else ""


def _timestamp(value: Any) -> datetime:
    try:
        seconds = float(value)
        return datetime.fromtimestamp(seconds, UTC) if math.isfinite(seconds) else EPOCH
    except (TypeError, ValueError, OverflowError, OSError):
        return EPOCH


def _score(value: str | None) -> float | None:
    try:
        score = float(value) if value is not None else None
    except ValueError:
        return None
    return score if score is not None and math.isfinite(score) else None


def _as_int(value: Any, default: int) -> int:
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


def _is_json(response: requests.Response) -> bool:
    try:
        response.json()
    except ValueError:
        return False
    return True


def _error_text(response: requests.Response) -> str:
    """The server's own words for an error (``error``/``message``/``detail``), bounded."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        parts = [str(body[k]) for k in ("error", "message", "detail") if body.get(k)]
        text = ": ".join(parts)
    else:
        content_type = response.headers.get("Content-Type", "")
        text = response.text if content_type.startswith("text/plain") else ""
    return _CONTROL.sub(" ", text).strip()[:ERROR_DETAIL_LIMIT]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS verification failed (set ca_file or check the certificate)"
    return f"{type(exc).__name__}: {exc}"[:ERROR_DETAIL_LIMIT]
