"""The service as the quarantine of an rspamd node: the rejected messages Rspamd pushes.

Postfix + Rspamd keep nothing after a reject, so Rspamd's metadata_exporter pushes the
message here (docs/rspamd/) and the service keeps it: once per message, compressed, in the
database every web and worker process shares, with one copy row per recipient. The report
link's ``m`` is the message's own digest (:func:`message_id_of`), which the Lua rule computes
from the same bytes, so the rule and the push need no shared state and a repeated push is
the same message. Retention is the admins' short and long setting, enforced by
:func:`sweep`; release re-injects the bytes through SMTP (release/gateway/rspamd.py).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.policy import compat32

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from release.db.models import StoredCopy, StoredMessage
from release.db.states import StoredQuarantine

MESSAGE_ID_LENGTH = 32  # hex digits of SHA-256: 128 bits, the Lua rule's string.sub(…, 1, 32)
MAX_RECIPIENTS = 1000  # Postfix's smtpd_recipient_limit
ADDRESS_LIMIT = 320
SUBJECT_LIMIT = 500
SYMBOLS_LIMIT = 8000
LABEL_LIMIT = 1000  # copies a sweep names (purge --dry-run); the counts cover them all
COMPRESSION_LEVEL = 6  # zlib's default: 100 kB of mail in about 1 ms (bench/push.py)
# An envelope address re-injection can give back exactly as it is: one "@", a dot-atom local
# part (UTF-8 allowed) and a domain; no quotes, spaces, commas or brackets, which an SMTP
# client's address parsing would read as another address (the rule pushes no others).
ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\u00a0-\U0010ffff-]{1,64}@[A-Za-z0-9.\u00a0-\U0010ffff-]{1,255}")
CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]")  # Cc and bidi/format
SUBJECT_RAW_LIMIT = 4000  # characters of the raw header decoded: a sender must not choose the parse cost
HEADER_BLOCK_LIMIT = 256 * 1024  # where the header block is looked for


class PushInvalid(ValueError):
    """The push is not a message with its envelope: the exporter's config is wrong (400)."""


@dataclass(frozen=True)
class Pushed:
    """A rejected message as Rspamd's exporter pushed it: the bytes and the envelope."""

    content: bytes
    envelope_sender: str  # "" for the null sender (a bounce)
    recipients: tuple[str, ...]
    queue_id: str = ""
    sender_ip: str = ""
    spam_score: float | None = None
    symbols: tuple[str, ...] = ()

    @property
    def message_id(self) -> str:
        return message_id_of(self.content)


@dataclass(frozen=True)
class StoreResult:
    """What a push did: the message's ``m``, and how many recipients' copies were new."""

    message_id: str
    added: int
    repeat: bool  # the message was stored before (the exporter or the MTA tried again)


@dataclass
class SweepResult:
    """What one retention sweep freed (or, dry, would free)."""

    copies: int = 0
    messages: int = 0
    bytes_freed: int = 0
    labels: list[str] = field(default_factory=list)


def message_id_of(content: bytes) -> str:
    """The report link's ``m`` for a message: its SHA-256, as the Lua rule computes it."""
    return hashlib.sha256(content).hexdigest()[:MESSAGE_ID_LENGTH]


def parse_push(content: bytes, header: Callable[[str], str | None]) -> Pushed:
    """Read the exporter's ``X-Rspamd-*`` metadata headers (``meta_headers = true``);
    ``header`` looks one up by name, case-insensitively (werkzeug's ``Headers.get``).

    Werkzeug hands header values over as Latin-1; Rspamd sends UTF-8, so they are decoded
    again. Raises :class:`PushInvalid` when the envelope is missing or malformed.
    """
    if not content:
        raise PushInvalid("the body is empty: the exporter must send the message (formatter default)")
    sender = _header(header, "from")
    if sender is None:
        raise PushInvalid("X-Rspamd-From is missing: set meta_headers = true")
    sender = "" if sender == "<>" else sender  # "unknown": Rspamd could not read it; refused below
    if sender and not ADDRESS.fullmatch(sender):
        raise PushInvalid("X-Rspamd-From is not an address (the rule pushes only readable senders)")
    raw_rcpt = _header(header, "rcpt")
    recipients = _json(raw_rcpt) if raw_rcpt is not None else None
    if not isinstance(recipients, list) or not recipients or len(recipients) > MAX_RECIPIENTS:
        raise PushInvalid(f"X-Rspamd-Rcpt must be a JSON list of 1 to {MAX_RECIPIENTS} addresses")
    if not all(isinstance(r, str) and ADDRESS.fullmatch(r) for r in recipients):
        raise PushInvalid("X-Rspamd-Rcpt holds something that is not an address")
    # RCPT TO twice (in any case) is one copy; the first spelling is kept, as the local part's
    # case may matter to the mailbox it is given back to.
    first: dict[str, str] = {}
    for address in recipients:
        first.setdefault(address.casefold(), address)
    unique = tuple(first.values())
    if any(len(r) > ADDRESS_LIMIT for r in unique):
        raise PushInvalid("X-Rspamd-Rcpt holds something that is not an address")
    return Pushed(
        content=content,
        envelope_sender=sender,
        recipients=unique,
        queue_id=_bounded(_header(header, "qid", informative=True), 64, "unknown"),
        sender_ip=_ip(_header(header, "ip", informative=True)),
        spam_score=_score(_header(header, "score", informative=True)),
        symbols=_symbols(_header(header, "symbols", informative=True)),
    )


class StoreConflict(Exception):
    """The same message was changed by another request (or the retention run) at this very
    moment, twice running: the push is answered 503 and the rule defers (nothing is lost)."""


def store(session: Session, node: str, pushed: Pushed, now: datetime) -> StoreResult:
    """Keep a pushed message under the short retention; commits. Idempotent: a repeat adds
    only recipients not seen before (two transactions with the same bytes, each copy with its
    own envelope sender), never a copy twice; a repeat also restarts the short retention of
    the copies still in it (a new link is about to be sent for them)."""
    for _ in range(2):
        try:
            return _store(session, node, pushed, now)
        except IntegrityError:
            session.rollback()  # a concurrent push or sweep got there first: look again
    raise StoreConflict(f"message {pushed.message_id} changed under two pushes in a row")


def _store(session: Session, node: str, pushed: Pushed, now: datetime) -> StoreResult:
    message_id = pushed.message_id
    message = _find(session, node, message_id)
    repeat = message is not None
    if message is None:
        compressed = zlib.compress(pushed.content, COMPRESSION_LEVEL)
        message = StoredMessage(
            node=node,
            message_id=message_id,
            envelope_sender=pushed.envelope_sender,
            subject=subject_of(pushed.content),
            queue_id=pushed.queue_id,
            sender_ip=pushed.sender_ip,
            spam_score=pushed.spam_score,
            symbols=" ".join(pushed.symbols)[:SYMBOLS_LIMIT],
            size=len(pushed.content),
            stored_size=len(compressed),
            content=compressed,
            received_at=now,
        )
        session.add(message)
        session.flush()  # IntegrityError: the same push, stored by another request a moment ago
    copies = select(StoredCopy.recipient).where(StoredCopy.message_pk == message.id)
    known = {r.casefold() for r in session.scalars(copies)}
    new = [r for r in pushed.recipients if r.casefold() not in known]
    for recipient in new:
        # One savepoint each: a copy another push added meanwhile is skipped, not the others.
        try:
            with session.begin_nested():
                session.add(StoredCopy(message_pk=message.id, recipient=recipient, held_since=now,
                                       envelope_sender=pushed.envelope_sender))  # fmt: skip
        except IntegrityError:
            new = [r for r in new if r != recipient]
    if repeat:
        session.execute(
            update(StoredCopy)
            .where(StoredCopy.message_pk == message.id, StoredCopy.quarantine == StoredQuarantine.SHORT)
            .values(held_since=now)
            .execution_options(synchronize_session=False)
        )
    session.commit()
    return StoreResult(message_id, len(new), repeat)


def content_of(message: StoredMessage, limit: int | None = None) -> bytes:
    """The message's bytes, exactly as pushed; only the first ``limit`` when given (a
    preview never inflates more than it shows)."""
    if limit is None:
        return zlib.decompress(message.content)
    return zlib.decompressobj().decompress(message.content, max(limit, 1))[:limit]


def sweep(session: Session, short: timedelta, long: timedelta, now: datetime, dry_run: bool = False) -> SweepResult:
    """Drop copies past their retention (short from the push, long from the extension, a
    released one after the short retention), then the messages left without copies; their
    bytes go with them. Commits, unless ``dry_run``.

    Copies a report holds are deleted by the enforcement before this runs (marked expired
    there); what remains here are the copies nobody reported, which no one else removes.
    """
    due = or_(
        and_(StoredCopy.quarantine == StoredQuarantine.SHORT, StoredCopy.held_since <= now - short),
        and_(StoredCopy.quarantine == StoredQuarantine.LONG, StoredCopy.held_since <= now - long),
        and_(StoredCopy.quarantine.is_(None), StoredCopy.held_since <= now - short),
    )
    result = SweepResult()
    labels = session.execute(
        select(StoredCopy.id, StoredMessage.node, StoredMessage.message_id)
        .join(StoredMessage)
        .where(due)
        .order_by(StoredCopy.id)
        .limit(LABEL_LIMIT)
    ).all()
    result.labels = [f"{node}/{message_id}#{copy_id}" for copy_id, node, message_id in labels]
    result.copies = session.scalar(select(func.count()).select_from(StoredCopy).where(due)) or 0
    # Emptied by this sweep: no copy left that is not due (no IN lists, whatever the backlog).
    kept = select(StoredCopy.id).where(StoredCopy.message_pk == StoredMessage.id, ~due)
    emptied = ~kept.exists()
    count, size = session.execute(
        select(func.count(StoredMessage.id), func.coalesce(func.sum(StoredMessage.stored_size), 0)).where(emptied)
    ).one()
    result.messages, result.bytes_freed = int(count), int(size)
    if dry_run:
        return result
    session.execute(delete(StoredCopy).where(due).execution_options(synchronize_session=False))
    session.execute(delete(StoredMessage).where(emptied).execution_options(synchronize_session=False))
    session.commit()
    return result


def drop_empty(session: Session, message_pk: int) -> None:
    """Delete a message once its last copy is gone (its bytes are of no further use)."""
    session.execute(
        delete(StoredMessage)
        .where(
            StoredMessage.id == message_pk, ~select(StoredCopy.id).where(StoredCopy.message_pk == message_pk).exists()
        )
        .execution_options(synchronize_session=False)
    )


def forget_release_attempt(session: Session, node: str, message_id: str, copy_id: int) -> bool:
    """Clear the mark of a re-injection whose outcome nobody knows, so the next release sends
    the copy (an admin's retry, after the relay's log showed it never arrived). In the
    caller's transaction; True when there was such a mark."""
    cleared = session.execute(
        update(StoredCopy)
        .where(
            StoredCopy.id == copy_id,
            StoredCopy.release_started_at.is_not(None),
            StoredCopy.relayed_at.is_(None),
            StoredCopy.message_pk.in_(
                select(StoredMessage.id).where(StoredMessage.node == node, StoredMessage.message_id == message_id)
            ),
        )
        .values(release_started_at=None)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(cleared, "rowcount", 0))


@dataclass(frozen=True)
class Totals:
    """What the service holds for rspamd nodes, for the admin console and /metrics."""

    messages: int
    copies: int
    stored_bytes: int
    by_quarantine: Mapping[str, int]


def totals(session: Session) -> Totals:
    """Counts and the compressed size, in two aggregate queries."""
    messages, stored_bytes = session.execute(
        select(func.count(StoredMessage.id), func.coalesce(func.sum(StoredMessage.stored_size), 0))
    ).one()
    by_quarantine = {
        (q or "released"): n
        for q, n in session.execute(select(StoredCopy.quarantine, func.count()).group_by(StoredCopy.quarantine))
    }
    return Totals(int(messages), sum(by_quarantine.values()), int(stored_bytes), by_quarantine)


# -- helpers ---------------------------------------------------------------------------------------


def _find(session: Session, node: str, message_id: str) -> StoredMessage | None:
    return session.scalar(
        select(StoredMessage).where(StoredMessage.node == node, StoredMessage.message_id == message_id)
    )


def _header(header: Callable[[str], str | None], name: str, *, informative: bool = False) -> str | None:
    """A metadata header as text. The envelope must be UTF-8; an informative one (symbols,
    score...) that is not, or was cut mid-character, is read with replacement characters."""
    value = header(f"X-Rspamd-{name}")
    if value is None:
        return None
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        raw = value.encode("utf-8", "replace")
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        if informative:
            return raw.decode("utf-8", "replace").strip()
        raise PushInvalid(f"X-Rspamd-{name} is not UTF-8") from None


def _json(value: str) -> object:
    """The JSON in a header, or None when it is none. Nesting deeper than the parser recurses
    (a thousand brackets fit in a header line) is not JSON the exporter sends, not a crash."""
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return None


def _bounded(value: str | None, limit: int, default: str = "") -> str:
    if not value or any(ord(c) < 32 for c in value):
        return default
    return value[:limit]


def _ip(value: str | None) -> str:
    try:
        return str(ipaddress.ip_address(value or ""))
    except ValueError:
        return ""  # "unknown" (a local submission) or garbage


def _score(value: str | None) -> float | None:
    try:
        score = float(value or "")
    except ValueError:
        return None
    return score if -1e6 < score < 1e6 else None  # also refuses nan and inf


def _symbols(value: str | None) -> tuple[str, ...]:
    """Symbol names with their scores, "GTUBE(15.00)"; the exporter sends a JSON list."""
    items = _json(value or "[]")
    out = []
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict) and isinstance(item.get("name"), str) and re.fullmatch(r"[A-Za-z0-9_]{1,64}",
                                                                                         item["name"]):  # fmt: skip
            score = _finite(item.get("score"))
            out.append(f"{item['name']}({score:.2f})" if score is not None else item["name"])
    return tuple(out)


def subject_of(content: bytes) -> str:
    """The decoded Subject, one line, bounded, without control or format characters
    (PostgreSQL's text cannot hold NUL, which a raw or an encoded header can carry); "" when
    absent or unreadable.

    Linear in the sender's input: only the header block is parsed, with the compat32 policy
    (the default policy's header parsing costs memory and time that grow faster than the
    header: a 140 kB Subject of encoded words took ~700 MB), and only the first
    ``SUBJECT_RAW_LIMIT`` characters of the Subject are decoded."""
    block = _header_block(content)
    try:
        raw = BytesHeaderParser(policy=compat32).parsebytes(block).get("subject")
        if raw is None:
            return ""
        text = str(make_header(decode_header(str(raw)[:SUBJECT_RAW_LIMIT])))
    except Exception:  # noqa: BLE001 - a malformed header must not lose the message
        return ""
    return " ".join(CONTROLS.sub("", " ".join(text.split())).split())[:SUBJECT_LIMIT]


def _header_block(content: bytes) -> bytes:
    """The message's headers (up to the first empty line), at most HEADER_BLOCK_LIMIT bytes."""
    head = content[:HEADER_BLOCK_LIMIT]
    ends = [i for i in (head.find(b"\r\n\r\n"), head.find(b"\n\n")) if i >= 0]
    return head[: min(ends)] if ends else head


def _finite(value: object) -> float | None:
    """A JSON number as a float, or None (also for an integer beyond a float, nan, inf)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
