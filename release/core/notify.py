"""Mailing recipients their release links (never the sender's comment), under a per-address
daily cap, a few mails per SMTP round and each recorded at once. Runs in the worker."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy import String, bindparam, func, select, text
from sqlalchemy.orm import Session, joinedload

from release.core import history
from release.core.context import Context, end_transaction
from release.core.reports import ERROR_LIMIT, fail_copy, raise_failure, settle_reports
from release.db.models import Recipient, Report
from release.db.states import RecipientState
from release.jobs.outcomes import Deferred, RetryLater
from release.mail.compose import Notification, build_notification

NOTIFY_WINDOW = timedelta(hours=24)
RECORD_EVERY = 8  # notifications sent between two commits (the pooled SMTP session stays open)


class Notifier:
    """The notify step."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def notify(self, session: Session, recipient_id: int) -> None:
        """:meth:`notify_many` for one recipient; raises what kept it from finishing."""
        raise_failure(self.notify_many(session, [recipient_id]), recipient_id)

    def notify_many(self, session: Session, recipient_ids: Sequence[int]) -> dict[int, Exception]:
        """Mail recipients their release links, all over one SMTP session; returns, per
        recipient id, why that one did not finish (absent: done)."""
        recipients = session.scalars(
            select(Recipient)
            .where(Recipient.id.in_(recipient_ids))
            .options(joinedload(Recipient.report))
            .order_by(Recipient.id)
        ).all()
        # A recipient no longer waiting is a replay after a crash between our commit and the
        # settle below: settle now, or a report whose last mail went out stays "locating".
        to_settle = {r.report_id for r in recipients if r.state != RecipientState.NOTIFY_PENDING}
        waiting = [r for r in recipients if r.state == RecipientState.NOTIFY_PENDING]
        # Not yet counted against the recipient's daily cap (a retry after an SMTP failure or
        # a crash already holds its place): take a place or wait for one.
        failures: dict[int, Exception] = self._reserve(session, [r for r in waiting if r.notified_at is None])
        events: list[dict[str, Any]] = []
        sending: list[tuple[Recipient, EmailMessage]] = []
        for recipient in waiting:
            if recipient.id in failures:
                continue
            try:
                sending.append((recipient, self._notification(recipient, recipient.report)))
            except ValueError as exc:  # an address or value that cannot go into a mail safely
                events.append(_failed(recipient, f"cannot build the notification: {exc}"))
                to_settle.add(recipient.report_id)
        history.record_many(session, events)
        end_transaction(session)
        # A few mails per send, each recorded at once: a crash between the server's 250 and
        # our commit repeats at most that many mails (same Message-ID), not the whole batch.
        for start in range(0, len(sending), RECORD_EVERY):
            chunk = sending[start : start + RECORD_EVERY]
            results = self.ctx.mailer.send([message for _, message in chunk])
            events = []
            for (recipient, _), result in zip(chunk, results, strict=True):
                if result.temporary:
                    failures[recipient.id] = RetryLater(f"SMTP: {result.error}")
                    continue
                if result.ok:
                    recipient.state = RecipientState.NOTIFIED
                    recipient.notified_at = self.ctx.clock()
                    events.append(history.event_row(history.SYSTEM, "notified", recipient.report, recipient))
                else:
                    events.append(_failed(recipient, f"SMTP refused the notification: {result.error}"))
                to_settle.add(recipient.report_id)
            history.record_many(session, events)
            session.commit()
        settle_reports(session, sorted(to_settle))
        return failures

    def _reserve(self, session: Session, recipients: list[Recipient]) -> dict[int, Exception]:
        """Count notifications against ``limits.notifications_per_recipient_per_day``.

        Under the cap: stamp ``notified_at`` now and commit, before sending, so concurrent
        notify jobs for the same address see each other (PostgreSQL: serialised per address
        by advisory locks, taken in key order so two batches cannot deadlock; SQLite: every
        transaction holds the write lock). Over the cap: :class:`Deferred` until the oldest
        counted notification leaves the 24 h window. Addresses compare case-insensitively:
        case variants are one mailbox. Returns the deferrals by recipient id.
        """
        if not recipients:
            return {}
        cap = self.ctx.settings.limits.notifications_per_recipient_per_day
        now = self.ctx.clock()
        addresses = sorted({r.address.lower() for r in recipients})
        if session.get_bind().dialect.name == "postgresql":
            keys = sorted(_cap_lock_key(address) for address in addresses)
            session.execute(text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k"),
                            {"keys": keys})  # fmt: skip
        counted: dict[str, list[tuple[int, datetime]]] = {address: [] for address in addresses}
        for rid, address, at in session.execute(
            COUNTED_NOTIFICATIONS, {"addresses": addresses, "since": now - NOTIFY_WINDOW}
        ):
            if at is not None:
                counted[address].append((rid, at))
        deferred: dict[int, Exception] = {}
        for recipient in recipients:
            address = recipient.address.lower()
            recent = sorted((at for rid, at in counted[address] if rid != recipient.id), reverse=True)
            if len(recent) >= cap:
                # The cap-th newest leaves the window first among those that keep us over it.
                until = recent[cap - 1] + NOTIFY_WINDOW
                deferred[recipient.id] = Deferred(until, f"{cap} notifications to this address in 24 hours")
                continue
            recipient.notified_at = now
            counted[address].append((recipient.id, now))
        session.commit()  # releases the advisory locks
        return deferred

    def _notification(self, recipient: Recipient, report: Report) -> EmailMessage:
        settings = self.ctx.settings
        return build_notification(
            Notification(
                to_address=recipient.address,
                release_url=self.ctx.release_url(recipient),
                blocked_sender=report.envelope_sender or "",
                blocked_subject=report.subject or "",
                received_at=report.received_at or report.created_at,
                expires_at=recipient.expires_at,
                node=report.node,
                message_id=notification_message_id(settings.app.public_url, recipient),
                organisation=settings.branding.organisation_name,
            ),
            sender=settings.smtp.sender,
            jinja_env=self.ctx.mail_templates.for_address(recipient.address),
        )

    def on_dead(self, session: Session, recipient_id: int, error: str) -> None:
        """The notify job ran out of attempts: the copy shows as failed."""
        fail_copy(session, recipient_id, error)


def notification_message_id(public_url: str, recipient: Recipient) -> str:
    """Stable for one sending (a retry after a crash repeats it, so receivers can drop the
    duplicate); a deliberate resend gets a new one, so it is not dropped as a duplicate."""
    domain = public_url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    sending = int(recipient.notified_at.timestamp() * 1000) if recipient.notified_at else 0
    return f"<release-{recipient.token_hash[:32]}.{sending}@{domain or 'localhost'}>"


def _failed(recipient: Recipient, error: str) -> dict[str, Any]:
    """Mark a notification that can never be sent; returns its event row."""
    recipient.state = RecipientState.FAILED
    recipient.notified_at = None  # never reached the inbox: frees its place in the cap
    recipient.error = error[:ERROR_LIMIT]
    return history.event_row(history.SYSTEM, "notify_failed", recipient.report, recipient, recipient.error)


def _cap_lock_key(address: str) -> int:
    """The advisory lock that serialises one address's notification count (PostgreSQL)."""
    return int.from_bytes(hashlib.sha256(b"notify-cap:" + address.encode()).digest()[:8], "big", signed=True)


# The notifications counted against the daily cap, for a batch's addresses; served by the
# index on (lower(address), notified_at).
COUNTED_NOTIFICATIONS = select(Recipient.id, func.lower(Recipient.address), Recipient.notified_at).where(
    func.lower(Recipient.address).in_(bindparam("addresses", expanding=True, type_=String())),
    Recipient.notified_at > bindparam("since"),
)
