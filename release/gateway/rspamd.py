"""The Gateway for an rspamd node (Postfix or any MTA with Rspamd): the service is the
quarantine. Copies are rows of release/gateway/stored.py; moving them changes their
retention class; release re-injects the bytes through the node's relay (relay.py); learn-ham
teaches Rspamd's controller that a released message was ham.

Never twice: a release commits ``release_started_at`` before the relay sees the message and
``relayed_at`` with the relay's 250 right after, each in its own transaction. A copy with
the first and not the second was interrupted after it went out (a crash, a connection lost
after the message): the relay may have it, so it is never sent again by a retry
(:class:`DeliveryUncertain`); the admin console shows why and what to look for.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta

import requests
from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from release.config import NodeSettings
from release.db.engine import Database
from release.db.models import StoredCopy, StoredMessage, utcnow
from release.db.states import StoredQuarantine
from release.gateway import stored
from release.gateway.base import (
    DeliveryUncertain,
    GatewayError,
    GatewayRejected,
    MessageContent,
    NodeHealth,
    QuarantinedCopy,
)
from release.gateway.http_body import read_bounded
from release.gateway.relay import Outcome, Relay

# Rspamd answers 208 to a message it has learned before: learned all the same.
LEARNED = (200, 208)
CONTROLLER_ANSWER_LIMIT = 1 << 20
ERROR_TEXT_LIMIT = 200


class RspamdGateway:
    """One rspamd node; ``db`` is the service's database (None: only health checks work)."""

    def __init__(
        self,
        node: NodeSettings,
        db: Database | None,
        *,
        relay: Relay | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.name = node.name
        self.node = node
        self.db = db
        self.relay = relay or Relay(node)
        self.clock = clock
        self.http = requests.Session()

    # -- the Gateway protocol -------------------------------------------------------------------

    def find(self, transaction: str, queue: int | None = None) -> list[QuarantinedCopy]:
        copies = self.find_many([transaction])[transaction]
        return copies if queue is None else [c for c in copies if c.queue == queue]

    def find_many(self, transactions: Sequence[str]) -> dict[str, list[QuarantinedCopy]]:
        query = (
            select(StoredCopy, StoredMessage)
            .join(StoredMessage)
            .where(StoredMessage.node == self.name, StoredMessage.message_id.in_(list(transactions)))
            .order_by(StoredCopy.id)
        )
        found: dict[str, list[QuarantinedCopy]] = {t: [] for t in transactions}
        with self._store() as session:
            for copy, message in session.execute(query):
                found[message.message_id].append(_as_copy(copy, message))
        return found

    def move(self, transaction: str, queues: Sequence[int], quarantine: str) -> int:
        return self.move_many([(transaction, q) for q in queues], quarantine)

    def move_many(self, copies: Sequence[tuple[str, int]], quarantine: str) -> int:
        """Change the retention class of held copies (the new one counts from now); a released
        or deleted copy stays as it is. Returns how many now carry ``quarantine``."""
        if quarantine not in tuple(StoredQuarantine):
            raise GatewayRejected(f"an rspamd node holds copies only as short or long, not {quarantine!r}")
        mine = self._held([q for _, q in copies], [t for t, _ in copies])
        with self._store() as session:
            session.execute(
                update(StoredCopy)
                .where(StoredCopy.id.in_(mine), StoredCopy.quarantine != quarantine)
                .values(quarantine=quarantine, held_since=self.clock())
                .execution_options(synchronize_session=False)
            )
            carrying = session.scalar(
                select(func.count()).where(StoredCopy.id.in_(mine), StoredCopy.quarantine == quarantine)
            )
            session.commit()
        return int(carrying or 0)

    def release(self, transaction: str, queue: int) -> int:
        """Re-inject one copy; 1 once the relay took it (now or before), 0 when it is gone."""
        claimed = self._claim(transaction, queue)
        if claimed is None:
            return 0
        if isinstance(claimed, int):
            return claimed
        sender, recipient, content = claimed
        result = self.relay.send(sender, recipient, content)
        with self._store() as session:
            copy = session.get(StoredCopy, queue, with_for_update=True)
            if copy is None:  # deleted meanwhile (retention); what the relay did still stands
                return 1 if result.outcome is Outcome.DELIVERED else 0
            if result.outcome is Outcome.DELIVERED:
                now = self.clock()
                copy.relayed_at, copy.relay_reply = now, result.reply
                copy.quarantine, copy.held_since = None, now
            elif result.outcome is not Outcome.UNCERTAIN:
                copy.release_started_at = None  # definitely not taken: a retry may send it
            session.commit()
        if result.outcome is Outcome.DELIVERED:
            return 1
        if result.outcome is Outcome.UNCERTAIN:
            raise DeliveryUncertain(_uncertain(self.relay.address, result.reply))
        if result.outcome is Outcome.REFUSED:
            raise GatewayRejected(f"relay {self.relay.address} refused the copy: {result.reply}")
        raise GatewayError(f"relay {self.relay.address}: {result.reply}")

    def delete(self, transaction: str, queues: Sequence[int]) -> int:
        """Drop copies (a released one is kept as the record of its 250); the message goes with
        its last copy, so its bytes are freed at once."""
        with self._store() as session:
            rows = session.scalars(select(StoredCopy).where(StoredCopy.id.in_(self._held(queues, [transaction])))).all()
            parents = {row.message_pk for row in rows}
            for row in rows:
                session.delete(row)
            session.flush()
            for pk in parents:
                stored.drop_empty(session, pk)
            session.commit()
        return len(rows)

    def content(self, transaction: str, queue: int, limit: int) -> MessageContent | None:
        """The stored bytes behind one copy (held or released), inflated no further than
        ``limit``; None when the copy is gone."""
        with self._store() as session:
            message = session.scalar(
                select(StoredMessage)
                .join(StoredCopy)
                .where(StoredMessage.node == self.name, StoredMessage.message_id == transaction, StoredCopy.id == queue)
            )
            if message is None:
                return None
            verdicts = tuple(symbol.partition("(")[0] for symbol in message.symbols.split())  # "NAME(score)"
            return MessageContent(stored.content_of(message, limit), message.size, verdicts)

    def health(self) -> NodeHealth:
        """The relay answers (the push comes to us, so there is no API to log in to)."""
        ok, latency_ms, detail = self.relay.check()
        return NodeHealth(reachable=ok, authenticated=ok, latency_ms=latency_ms, detail=detail)

    # -- beyond the protocol: learn-ham -----------------------------------------------------------

    @property
    def learns(self) -> bool:
        """A controller is configured: released messages are taught to Rspamd as ham."""
        return bool(self.node.controller_url)

    def learn_ham(self, transaction: str) -> bool:
        """Teach Rspamd the message is ham; False when its bytes are gone (nothing to teach)."""
        with self._store() as session:
            message = session.scalar(
                select(StoredMessage).where(StoredMessage.node == self.name, StoredMessage.message_id == transaction)
            )
            content = stored.content_of(message) if message is not None else None
        if content is None:
            return False
        status, text = self._controller("POST", "/learnham", data=content)
        if status in LEARNED:
            return True
        raise self._controller_error("learnham", status, text)

    def check_controller(self) -> tuple[bool, str]:
        """Reach the controller with the password (GET /stat), for check-config."""
        try:
            status, text = self._controller("GET", "/stat")
        except GatewayError as exc:
            return False, str(exc)
        if status == 200:
            return True, f"controller {self.node.controller_url} answered /stat"
        return False, str(self._controller_error("stat", status, text))

    def close(self) -> None:
        self.relay.close()
        self.http.close()

    # -- helpers ------------------------------------------------------------------------------

    @contextmanager
    def _store(self) -> Iterator[Session]:
        """A session on the service's database; a database outage is a gateway outage (retry)."""
        if self.db is None:
            raise GatewayError("no database to keep this node's copies in")
        try:
            with self.db.session() as session:
                yield session
        except SQLAlchemyError as exc:
            raise GatewayError(f"database: {type(exc).__name__}") from exc

    def _held(self, ids: Sequence[int], transactions: Sequence[str]) -> Select[int]:
        """Which of ``ids`` are copies of ``transactions`` on this node, still held."""
        return (
            select(StoredCopy.id)
            .join(StoredMessage)
            .where(
                StoredCopy.id.in_(list(ids)),
                StoredMessage.node == self.name,
                StoredMessage.message_id.in_(list(transactions)),
                StoredCopy.quarantine.is_not(None),
            )
        )

    def _claim(self, transaction: str, queue: int) -> tuple[str, str, bytes] | int | None:
        """Mark one copy as being re-injected, or say why not: None (gone), 1 (the relay
        took it before), or :class:`DeliveryUncertain` (an earlier attempt was cut off)."""
        with self._store() as session:
            copy = session.scalar(
                select(StoredCopy)
                .join(StoredMessage)
                .where(StoredCopy.id == queue, StoredMessage.node == self.name, StoredMessage.message_id == transaction)
                .with_for_update()
            )
            if copy is None:
                return None
            if copy.relayed_at is not None:
                return 1
            if copy.release_started_at is not None:
                if self.clock() - copy.release_started_at < self._in_flight_limit:
                    raise GatewayError("another attempt is re-injecting this copy right now")
                raise DeliveryUncertain(_uncertain(self.relay.address, "the service stopped while sending"))
            copy.release_started_at = self.clock()
            message = copy.message
            claimed = (copy.envelope_sender, copy.recipient, stored.content_of(message))
            session.commit()
        return claimed

    @property
    def _in_flight_limit(self) -> timedelta:
        # Longer than one whole re-injection can take (relay.Relay bounds it): past this, the
        # attempt that set the mark is no longer running.
        return timedelta(seconds=self.node.timeout_seconds * 8 + 60)

    def _controller(self, method: str, path: str, data: bytes | None = None) -> tuple[int, str]:
        """(status, answer text) from the controller: no redirect followed (the password
        header would go along), the whole answer within the node's timeout and 1 MiB."""
        node = self.node
        deadline = time.monotonic() + node.timeout_seconds
        try:
            with self.http.request(
                method,
                node.controller_url.rstrip("/") + path,
                data=data,
                headers={"Password": node.controller_password},
                timeout=node.timeout_seconds,
                verify=(node.ca_file or True) if node.verify_tls else False,
                allow_redirects=False,
                stream=True,
            ) as response:
                body = read_bounded(response, deadline, CONTROLLER_ANSWER_LIMIT)
                status = response.status_code
        except requests.RequestException as exc:
            raise GatewayError(f"controller {node.controller_url}: {type(exc).__name__}") from None
        if 300 <= status < 400:
            raise GatewayRejected(f"controller {node.controller_url} answered a redirect ({status}); give its own URL")
        return status, body[:ERROR_TEXT_LIMIT].decode("utf-8", "replace")

    def _controller_error(self, what: str, status: int, text: str) -> GatewayError:
        password = self.node.controller_password
        shown = " ".join(text.split())
        for form in {password, json.dumps(password)[1:-1]} - {""}:  # as sent, and JSON-escaped
            shown = shown.replace(form, "***")
        if status in (401, 403):
            return GatewayRejected(f"controller refused {what}: {status} (check controller_password)")
        if 400 <= status < 500:
            return GatewayRejected(f"controller refused {what}: {status} {shown}")
        return GatewayError(f"controller {what}: {status} {shown}")


def _as_copy(copy: StoredCopy, message: StoredMessage) -> QuarantinedCopy:
    return QuarantinedCopy(
        transaction=message.message_id,
        queue=copy.id,
        sender=copy.envelope_sender,
        recipient=copy.recipient,
        subject=message.subject,
        received_at=message.received_at,
        quarantine=copy.quarantine,
        sender_ip=message.sender_ip,
        spam_score=message.spam_score,
        metadata={"queue_id": message.queue_id, "symbols": message.symbols},
    )


def _uncertain(address: str, why: str) -> str:
    return (
        f"the relay {address} may have taken this copy before the release was cut off ({why}); it is not sent "
        "again automatically, so it cannot arrive twice. Look for it in the relay's log; only if it is not "
        "there, retry the release job (docs/operations.md)"
    )
