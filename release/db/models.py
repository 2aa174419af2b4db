"""The service's tables: reports, recipients' copies, held-message notices, durable jobs,
settings and events, and what every web process must share: used CAPTCHA solutions and
sign-in failures.

States are constrained in the schema, "once" rules are UNIQUE constraints, and every time
is a timezone-aware UTC datetime (stored naive-UTC on SQLite, converted on the way out).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, ORMExecuteState, Session, mapped_column, relationship

from release.db.states import AdminRole, JobKind, JobState, NoticeState, RecipientState, ReportState, StoredQuarantine

# The partial unique index that keeps one periodic enforcement queued (its SQL must match
# the migration that created it).
ONE_QUEUED_ENFORCE = f"kind = '{JobKind.ENFORCE.value}' AND state = '{JobState.QUEUED.value}'"

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Timezone-aware current time in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A DateTime that only accepts aware values and always returns aware UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _states_check(column: str, states: type[StrEnum]) -> CheckConstraint:
    allowed = ", ".join(f"'{s.value}'" for s in states)
    return CheckConstraint(f"{column} IN ({allowed})", name=f"{column}_valid")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime}


class Report(Base):
    """A sender's claim that one rejected transaction on one node is genuine."""

    __tablename__ = "reports"
    __table_args__ = (
        UniqueConstraint("node", "message_id"),
        _states_check("state", ReportState),
        Index(None, "created_at"),
        Index(None, "sender_ip", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    node: Mapped[str] = mapped_column(String(63))
    message_id: Mapped[str] = mapped_column(String(128))
    link_issued_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16), default=ReportState.PENDING)
    comment: Mapped[str] = mapped_column(Text)
    sender_ip: Mapped[str] = mapped_column(String(45))
    # Filled in from the gateway once the copies are located.
    envelope_sender: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(String(1000))
    received_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    recipients: Mapped[list[Recipient]] = relationship(
        back_populates="report", order_by="Recipient.queue", cascade="all, delete-orphan"
    )


class Recipient(Base):
    """One recipient's quarantined copy of a reported message, and its release link."""

    __tablename__ = "recipients"
    __table_args__ = (
        UniqueConstraint("report_id", "queue"),
        _states_check("state", RecipientState),
        Index(None, "expires_at"),
        # The per-recipient notification cap compares addresses case-insensitively.
        Index("ix_recipients_lower_address_notified_at", text("lower(address)"), "notified_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"), index=True)
    # Halon queue ids are int64; SQLite's INTEGER already is.
    queue: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    address: Mapped[str] = mapped_column(String(320))
    state: Mapped[str] = mapped_column(String(20), default=RecipientState.NOTIFY_PENDING)
    token_nonce: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    spam_score: Mapped[float | None] = mapped_column(Float)
    quarantine: Mapped[str | None] = mapped_column(String(64))
    # Where the gateway held the copy when it was found (the release policy reads it).
    held_in: Mapped[str | None] = mapped_column(String(64))
    # Why an admin approved or denied a release the policy held back.
    decision_reason: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime]
    notified_at: Mapped[datetime | None]
    release_requested_at: Mapped[datetime | None]
    release_attempted_at: Mapped[datetime | None]
    released_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    report: Mapped[Report] = relationship(back_populates="recipients")


class AllowedSender(Base):
    """A recipient's "always allow this sender", which the gateway may query before rejecting."""

    __tablename__ = "allowed_senders"
    __table_args__ = (UniqueConstraint("recipient", "sender"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # Both stored lower-case: the gateway's lookup is case-insensitive.
    recipient: Mapped[str] = mapped_column(String(320))
    sender: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    source_recipient_id: Mapped[int | None] = mapped_column(Integer)


class Job(Base):
    """A durable unit of work for the worker (the transactional outbox)."""

    __tablename__ = "jobs"
    __table_args__ = (
        _states_check("state", JobState),
        _states_check("kind", JobKind),
        Index(None, "state", "run_after"),
        Index(None, "kind", "ref_id"),
        # At most one periodic enforcement waits in the queue, however many workers start.
        Index(
            "uq_jobs_one_queued_enforce",
            "kind",
            unique=True,
            sqlite_where=text(ONE_QUEUED_ENFORCE),
            postgresql_where=text(ONE_QUEUED_ENFORCE),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    ref_id: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(8), default=JobState.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    run_after: Mapped[datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class SenderNotice(Base):
    """A held message a halon6 node in "ndr" mode pushed: the sender gets one report mail
    (a non-delivery report carrying the report link), whatever the gateway repeats."""

    __tablename__ = "sender_notices"
    __table_args__ = (
        UniqueConstraint("node", "message_id"),
        _states_check("state", NoticeState),
        Index(None, "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    node: Mapped[str] = mapped_column(String(63))
    message_id: Mapped[str] = mapped_column(String(128))
    # The pushed link's fields (verified before the row exists).
    link_issued_at: Mapped[datetime]
    signature: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=NoticeState.QUEUED)
    envelope_sender: Mapped[str | None] = mapped_column(String(320))
    recipient_count: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class StoredMessage(Base):
    """A rejected message an rspamd node pushed: the service is its quarantine. The bytes are
    kept once (compressed), whatever the number of recipients; see release/core/stored.py."""

    __tablename__ = "stored_messages"
    __table_args__ = (UniqueConstraint("node", "message_id"), Index(None, "received_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    node: Mapped[str] = mapped_column(String(63))
    # The report link's ``m``: derived from the bytes, so a repeated push is the same message.
    message_id: Mapped[str] = mapped_column(String(128))
    envelope_sender: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(500))
    queue_id: Mapped[str] = mapped_column(String(64))  # the MTA's, for its logs
    sender_ip: Mapped[str] = mapped_column(String(45))
    spam_score: Mapped[float | None] = mapped_column(Float)
    symbols: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)  # as pushed
    stored_size: Mapped[int] = mapped_column(Integer)  # compressed, what the database holds
    # Loaded only when asked for (release, learn-ham): listings never pull the bytes.
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)

    copies: Mapped[list[StoredCopy]] = relationship(
        back_populates="message", cascade="all, delete-orphan", passive_deletes=True, order_by="StoredCopy.id"
    )


class StoredCopy(Base):
    """One recipient's copy of a stored message: its retention class and its re-injection."""

    __tablename__ = "stored_copies"
    __table_args__ = (
        UniqueConstraint("message_pk", "recipient"),
        CheckConstraint(
            f"quarantine IS NULL OR quarantine IN ({', '.join(repr(q.value) for q in StoredQuarantine)})",
            name="quarantine_valid",
        ),
        Index(None, "quarantine", "held_since"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)  # the copy's "queue id" to the flow
    message_pk: Mapped[int] = mapped_column(ForeignKey("stored_messages.id", ondelete="CASCADE"), index=True)
    recipient: Mapped[str] = mapped_column(String(320))
    # Its transaction's MAIL FROM ("" the null sender): the same bytes may come twice, from
    # two senders (a forwarder's SRS address), and each copy goes back with its own.
    envelope_sender: Mapped[str] = mapped_column(String(320))
    quarantine: Mapped[str | None] = mapped_column(String(8), default=StoredQuarantine.SHORT)
    # When the current retention started: the push (short), the extension (long), the release.
    held_since: Mapped[datetime] = mapped_column(default=utcnow)
    # Re-injection: started (committed before the relay gets the message), and the relay's 250.
    release_started_at: Mapped[datetime | None]
    relayed_at: Mapped[datetime | None]
    relay_reply: Mapped[str | None] = mapped_column(String(500))

    message: Mapped[StoredMessage] = relationship(back_populates="copies")


class PreviewContent(Base):
    """The start of a Halon-held message's bytes, read once from the node for its preview
    (compressed) and dropped with the message's last live copy (release/core/previews.py)."""

    __tablename__ = "preview_contents"
    __table_args__ = (UniqueConstraint("node", "message_id"), Index(None, "fetched_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    node: Mapped[str] = mapped_column(String(63))
    message_id: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))  # the whole message's
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow)


class Setting(Base):
    """Run-time settings admins change (retention), with who changed them last."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str] = mapped_column(String(128), default="system")


class Event(Base):
    """Append-only history of what happened to reports and copies, and who did it."""

    __tablename__ = "events"
    __table_args__ = (Index(None, "report_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    report_id: Mapped[int | None] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"))
    recipient_id: Mapped[int | None] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"))
    detail: Mapped[str] = mapped_column(Text, default="")


class AdminUser(Base):
    """A local console account; the password is stored only as a scrypt hash."""

    __tablename__ = "admin_users"
    __table_args__ = (_states_check("role", AdminRole),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(128), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(8))
    # Rotated at every sign-in and cleared at sign-out: a copied cookie dies with its login.
    session_nonce: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]


class AuditEntry(Base):
    """Who did what to what, when: append-only (the guards below refuse changes)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index(None, "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(256), default="")
    detail: Mapped[str] = mapped_column(Text, default="")


class UsedSolution(Base):
    """A CAPTCHA solution already used: a second use in any process finds its key taken."""

    __tablename__ = "used_captcha_solutions"
    __table_args__ = (Index(None, "expires_at"),)

    # SHA-256 (hex) of the solution's signature; the row is purged once it has expired.
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime]


class SignInFailures(Base):
    """Recent sign-in attempts for one user name (any case), and the back-off they earned."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (Index(None, "last_attempt_at"),)

    # SHA-256 (hex) of the case-folded user name: unknown names are counted too, and what a
    # stranger typed is not kept here (the audit log has it, cleaned).
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_attempt_at: Mapped[datetime]
    locked_until: Mapped[datetime | None]


class AuditLogIsAppendOnly(Exception):
    """Something tried to change or delete an audit entry through the ORM."""


@event.listens_for(Session, "before_flush")
def _refuse_audit_changes(session: Session, _context: object, _instances: object) -> None:
    for obj in session.deleted:
        if isinstance(obj, AuditEntry):
            raise AuditLogIsAppendOnly("audit entries cannot be deleted")
    for obj in session.dirty:
        if isinstance(obj, AuditEntry) and session.is_modified(obj):
            raise AuditLogIsAppendOnly("audit entries cannot be changed")


@event.listens_for(Session, "do_orm_execute")
def _refuse_bulk_audit_changes(state: ORMExecuteState) -> None:
    if (state.is_update or state.is_delete) and any(m.class_ is AuditEntry for m in state.all_mappers):
        raise AuditLogIsAppendOnly("audit entries cannot be changed or deleted")
