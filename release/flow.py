"""The domain steps: report, locate + extend + notify, release. The single source of truth.

Web views call :meth:`Flow.submit_report` and :meth:`Flow.request_release`, which only write
rows and jobs. The worker runs :meth:`Flow.locate`, :meth:`Flow.notify` and
:meth:`Flow.release`; each is safe to repeat after a crash at any point.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy import bindparam, case, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from . import jobs, links
from .config import Settings
from .gateway import Gateway, GatewayError, GatewayRejected, QuarantinedCopy
from .mail import Mailer, Notification, build_notification
from .mailtemplates import MailTemplates
from .models import Event, Recipient, Report, utcnow
from .retention import Retention, RetentionCache

SUBJECT_LIMIT = 1000
FINAL_REPORT_STATES = frozenset({"notified", "not_found", "failed"})
FINAL_RECIPIENT_STATES = frozenset({"released", "expired", "failed", "release_denied", "deleted"})
NOTIFY_WINDOW = timedelta(hours=24)


class RetryLater(Exception):
    """A step could not finish now (outage); the worker retries it with backoff."""


class PermanentFailure(Exception):
    """A step can never succeed; the worker stops retrying it."""


class Deferred(Exception):
    """A step must wait until ``until`` (a limit, not a failure): the worker re-queues the job
    for then without counting the attempt."""

    def __init__(self, until: datetime, reason: str) -> None:
        super().__init__(f"{reason}; waiting until {until.isoformat(timespec='seconds')}")
        self.until = until
        self.reason = reason


@dataclass(frozen=True)
class Submission:
    """What the sender's form produced; already CAPTCHA-checked by the view."""

    link: links.ReportLink
    comment: str
    sender_ip: str


class Flow:
    """Holds the collaborators the steps need; stateless between calls."""

    def __init__(
        self,
        settings: Settings,
        gateways: Mapping[str, Gateway],
        mailer: Mailer,
        mail_templates: MailTemplates,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.gateways = gateways
        self.mailer = mailer
        self.mail_templates = mail_templates
        self.clock = clock
        self._retention = RetentionCache(settings.retention)

    # -- web side --------------------------------------------------------------------------

    def retention(self, session: Session) -> Retention:
        """The retention in force (admin changes made in this process at once, others within
        ``retention.CACHE_SECONDS``)."""
        return self._retention.get(session)

    def submit_report(self, session: Session, submission: Submission) -> Report:
        """Store the report and its locate job in one transaction; a repeat returns the first."""
        link = submission.link
        existing = find_report(session, link.node, link.message_id)
        if existing is not None:
            return existing
        report = Report(
            node=link.node,
            message_id=link.message_id,
            link_issued_at=datetime.fromtimestamp(link.issued_at, tz=self.clock().tzinfo),
            state="pending",
            comment=submission.comment,
            sender_ip=submission.sender_ip,
        )
        session.add(report)
        try:
            session.flush()
        except IntegrityError:
            # Another request stored the same (node, message id) first: that one counts.
            session.rollback()
            winner = find_report(session, link.node, link.message_id)
            if winner is None:  # pragma: no cover - the unique row cannot vanish
                raise
            return winner
        self._event(session, "sender:" + submission.sender_ip, "reported", report)
        jobs.enqueue(session, "locate", report.id)
        session.commit()
        return report

    def request_release(self, session: Session, recipient: Recipient) -> Recipient:
        """Record the recipient's release request and queue the gateway call (idempotent)."""
        # Re-read under a row lock: two POSTs at once (a double click) must not both see
        # "notified" and queue two release jobs (PostgreSQL; SQLite serialises writers anyway).
        session.refresh(recipient, with_for_update=True)
        if not can_request_release(recipient):
            return recipient
        if recipient.expires_at <= self.clock():
            recipient.state = "expired"
            self._event(session, "system", "expired", recipient.report, recipient)
            session.commit()
            return recipient
        recipient.state = "release_requested"
        recipient.release_requested_at = self.clock()
        self._event(session, "recipient", "release_requested", recipient.report, recipient)
        jobs.enqueue(session, "release", recipient.id)
        session.commit()
        return recipient

    # -- worker side -----------------------------------------------------------------------

    def locate(self, session: Session, report_id: int) -> None:
        """Find the held copies, move them to the long quarantine, create recipients, queue mail."""
        report = session.get(Report, report_id)
        if report is None or report.state in FINAL_REPORT_STATES:
            return
        node = self.settings.node(report.node)
        gateway = self.gateways.get(report.node)
        if node is None or gateway is None:
            raise PermanentFailure(f"node {report.node!r} is no longer configured")
        known = {r.queue for r in report.recipients}
        _end_transaction(session)
        held = [
            c
            for c in self._call(gateway.find, report.message_id)
            if c.quarantine
            in (node.short_quarantine, node.long_quarantine, *self.settings.policy.high_risk_quarantines)
        ]
        if not held and not known:
            report.state = "not_found"
            self._event(session, "system", "not_found", report)
            session.commit()
            return
        if report.state == "pending":
            # Found: from here on the sender sees progress (while the gateway was not
            # answering, the report stayed "pending" with retries, as DESIGN §1 says).
            report.state = "locating"
            session.commit()
        short = [c.queue for c in held if c.quarantine != node.long_quarantine]
        _end_transaction(session)
        if short and self._call(gateway.move, report.message_id, short, node.long_quarantine) < len(short):
            # Some copy vanished between find and move (the gateway's own cleanup): keep only
            # what is really held now, so nobody is mailed about a copy that is gone.
            held = [c for c in self._call(gateway.find, report.message_id) if c.quarantine == node.long_quarantine]
        self._record_copies(session, report, [c for c in held if c.queue not in known], node.long_quarantine)
        session.commit()
        settle_report(session, report.id)

    def _record_copies(self, session: Session, report: Report, copies: list[QuarantinedCopy], long_q: str) -> None:
        if not copies:
            return
        first = copies[0]
        report.envelope_sender = first.sender[:320]
        report.subject = first.subject[:SUBJECT_LIMIT]
        report.received_at = first.received_at
        expires_at = self.clock() + self.retention(session).long
        added = []
        for copy in copies:
            nonce = links.new_token_nonce()
            recipient = Recipient(
                report=report,
                queue=copy.queue,
                address=copy.recipient[:320],
                state="notify_pending",
                token_nonce=nonce,
                token_hash=links.token_hash(links.release_token(self.settings.app.secret_key, nonce)),
                spam_score=copy.spam_score,
                quarantine=long_q,
                held_in=copy.quarantine,
                expires_at=expires_at,
            )
            added.append(recipient)
        session.add_all(added)
        session.flush()  # one flush for all copies: the events and jobs need their ids
        for recipient in added:
            self._event(session, "system", "retention_extended", report, recipient)
            jobs.enqueue(session, "notify", recipient.id)

    def notify(self, session: Session, recipient_id: int) -> None:
        """Mail one recipient the release link (never the sender's comment)."""
        recipient = session.get(Recipient, recipient_id)
        if recipient is None:
            return
        if recipient.state != "notify_pending":
            # A replay after a crash between our commit and the settle below: settle now, or
            # a report whose last mail went out would stay "locating" for ever.
            settle_report(session, recipient.report_id)
            return
        report = recipient.report
        if recipient.notified_at is None:
            # Not yet counted against the recipient's daily cap (a retry after an SMTP
            # failure or a crash already holds its place): take a place or wait for one.
            self._reserve_notification(session, recipient)
        try:
            message = self._notification(recipient, report)
        except ValueError as exc:  # an address or value that cannot go into a mail safely
            recipient.state = "failed"
            recipient.notified_at = None
            recipient.error = f"cannot build the notification: {exc}"[:2000]
            self._event(session, "system", "notify_failed", report, recipient, recipient.error)
            session.commit()
            settle_report(session, report.id)
            return
        _end_transaction(session)
        (result,) = self.mailer.send([message])
        if result.ok:
            recipient.state = "notified"
            recipient.notified_at = self.clock()
            self._event(session, "system", "notified", report, recipient)
        elif result.temporary:
            raise RetryLater(f"SMTP: {result.error}")
        else:
            recipient.state = "failed"
            recipient.notified_at = None  # never reached the inbox: frees its place in the cap
            recipient.error = f"SMTP refused the notification: {result.error}"
            self._event(session, "system", "notify_failed", report, recipient, recipient.error)
        session.commit()
        settle_report(session, report.id)

    def _reserve_notification(self, session: Session, recipient: Recipient) -> None:
        """Count this notification against ``limits.notifications_per_recipient_per_day``.

        Under the cap: stamp ``notified_at`` now and commit, before sending, so concurrent
        notify jobs for the same address see each other (PostgreSQL: serialised per address
        by an advisory lock; SQLite: every transaction holds the write lock). Over the cap:
        raise :class:`Deferred` until the oldest counted notification leaves the 24 h window.
        The address is compared case-insensitively: case variants are one mailbox.
        """
        cap = self.settings.limits.notifications_per_recipient_per_day
        address = recipient.address.lower()
        now = self.clock()
        if session.get_bind().dialect.name == "postgresql":
            key = int.from_bytes(hashlib.sha256(b"notify-cap:" + address.encode()).digest()[:8], "big", signed=True)
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        query = (
            select(Recipient.notified_at)
            .where(
                func.lower(Recipient.address) == address,
                Recipient.notified_at > now - NOTIFY_WINDOW,
                Recipient.id != recipient.id,
            )
            .order_by(Recipient.notified_at.desc())
            .limit(cap)
        )
        recent = [at for at in session.scalars(query) if at is not None]
        if len(recent) >= cap:
            # The cap-th newest leaves the window first among those that keep us over it.
            until = recent[cap - 1] + NOTIFY_WINDOW
            session.commit()  # releases the advisory lock
            raise Deferred(until, f"{cap} notifications to this address in 24 hours")
        recipient.notified_at = now
        session.commit()

    def _notification(self, recipient: Recipient, report: Report) -> EmailMessage:
        return build_notification(
            Notification(
                to_address=recipient.address,
                release_url=self.release_url(recipient),
                blocked_sender=report.envelope_sender or "",
                blocked_subject=report.subject or "",
                received_at=report.received_at or report.created_at,
                expires_at=recipient.expires_at,
                node=report.node,
                message_id=self.notification_message_id(recipient),
                organisation=self.settings.branding.organisation_name,
            ),
            sender=self.settings.smtp.sender,
            jinja_env=self.mail_templates.for_address(recipient.address),
        )

    def release(self, session: Session, recipient_id: int) -> None:
        """Put the copy back into delivery; a copy gone from the gateway becomes expired."""
        recipient = session.get(Recipient, recipient_id)
        if recipient is None or recipient.state != "release_requested":
            return
        report = recipient.report
        gateway = self.gateways.get(report.node)
        if gateway is None:
            raise PermanentFailure(f"node {report.node!r} is no longer configured")
        tried_before = recipient.release_attempted_at is not None
        if not tried_before:
            recipient.release_attempted_at = self.clock()
        _end_transaction(session)
        try:
            definite = bool(gateway.release(report.message_id, recipient.queue))
        except GatewayRejected as exc:
            # Refused outright, so this attempt did nothing: do not let a later "gone"
            # be read as "our earlier attempt released it".
            if not tried_before:
                recipient.release_attempted_at = None
                session.commit()
            raise RetryLater(f"gateway: {exc}") from exc
        except GatewayError as exc:
            raise RetryLater(f"gateway: {exc}") from exc
        if definite:
            outcome = "released"
        else:
            outcome = self._release_outcome(gateway, report.message_id, recipient.queue, tried_before)
        # Another run of this release (a duplicate job, or a lease that ran out mid-call) may
        # have decided meanwhile: re-read under a row lock and never overwrite its decision
        # with our guess; only a definite release corrects an "expired" it guessed.
        session.refresh(recipient, with_for_update=True)
        if recipient.state != "release_requested" and not (definite and recipient.state == "expired"):
            session.commit()
            return
        recipient.state = outcome
        if outcome == "released":
            recipient.released_at = self.clock()
        self._event(session, "system", outcome, report, recipient)
        session.commit()

    def _release_outcome(self, gateway: Gateway, message_id: str, queue: int, tried_before: bool) -> str:
        """Decide what a release that matched nothing means."""
        copies = self._call(gateway.find, message_id, queue)
        if any(c.quarantine is None for c in copies):
            return "released"  # already back in the active queue
        if copies:
            raise RetryLater("the gateway still holds the copy but did not release it")
        # Gone. If an earlier attempt may have gone through before a crash, that attempt
        # released it; otherwise the gateway's own retention removed it.
        return "released" if tried_before else "expired"

    def on_dead(self, session: Session, kind: str, ref_id: int, error: str) -> None:
        """A job ran out of attempts: show the failure instead of 'still working'."""
        if kind == "locate":
            report = session.get(Report, ref_id)
            if report is not None and report.state not in FINAL_REPORT_STATES:
                report.state = "failed"
                report.error = error[:2000]
                self._event(session, "system", "failed", report, detail=error)
        else:
            recipient = session.get(Recipient, ref_id)
            if recipient is not None and recipient.state not in FINAL_RECIPIENT_STATES:
                recipient.state = "failed"
                recipient.error = error[:2000]
                self._event(session, "system", "failed", recipient.report, recipient, error)
                session.commit()
                settle_report(session, recipient.report_id)

    # -- helpers ---------------------------------------------------------------------------

    def release_url(self, recipient: Recipient) -> str:
        """The recipient's link; derived from the stored nonce, never stored itself."""
        token = links.release_token(self.settings.app.secret_key, recipient.token_nonce)
        return f"{self.settings.app.public_url.rstrip('/')}/release/{token}"

    def notification_message_id(self, recipient: Recipient) -> str:
        """Stable for one sending (a retry after a crash repeats it, so receivers can drop the
        duplicate); a deliberate resend gets a new one, so it is not dropped as a duplicate."""
        domain = self.settings.app.public_url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
        sending = int(recipient.notified_at.timestamp() * 1000) if recipient.notified_at else 0
        return f"<release-{recipient.token_hash[:32]}.{sending}@{domain or 'localhost'}>"

    @staticmethod
    def _call(fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except GatewayError as exc:
            raise RetryLater(f"gateway: {exc}") from exc

    @staticmethod
    def _event(
        session: Session,
        actor: str,
        action: str,
        report: Report | None = None,
        recipient: Recipient | None = None,
        detail: str = "",
    ) -> None:
        session.add(
            Event(
                actor=actor,
                action=action,
                report_id=report.id if report else None,
                recipient_id=recipient.id if recipient else None,
                detail=detail[:2000],
            )
        )


def _end_transaction(session: Session) -> None:
    """Commit before a network call, so no row lock, SQLite write lock or pooled
    connection is held while the gateway or SMTP server takes its time."""
    session.commit()


def can_request_release(recipient: Recipient) -> bool:
    """Notified, or its mail is on the way (``notified_at`` is stamped before SMTP): a quick
    recipient may click before the worker commits "notified"."""
    return recipient.state == "notified" or (recipient.state == "notify_pending" and recipient.notified_at is not None)


def settle_report(session: Session, report_id: int) -> None:
    """Once no recipient waits for its mail, mark the report notified (or failed if no
    notification could be delivered at all); commits.

    Conditional UPDATEs, run after the caller committed its own recipient's change: of two
    notifications finishing at once, the later commit always sees both done.
    """
    pending = select(Recipient.id).where(Recipient.report_id == report_id, Recipient.state == "notify_pending")
    reached = select(Recipient.id).where(Recipient.report_id == report_id, Recipient.state != "failed")
    # One statement (it runs after every notification): notified if any recipient was reached.
    reached_any = reached.exists()
    session.execute(
        update(Report)
        .where(Report.id == report_id, Report.state == "locating", ~pending.exists())
        .values(
            state=case((reached_any, "notified"), else_="failed"),
            error=case((reached_any, Report.error), else_="no recipient could be notified"),
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()


# Built once (the status page runs it on every poll); the (node, message_id) unique index serves it.
_REPORT_BY_LINK = select(Report).where(Report.node == bindparam("node"), Report.message_id == bindparam("message_id"))
_REPORT_WITH_RECIPIENTS = _REPORT_BY_LINK.options(joinedload(Report.recipients))


def find_report(session: Session, node: str, message_id: str, *, with_recipients: bool = False) -> Report | None:
    """The report for a (node, message id), if one was made; ``with_recipients`` loads its
    recipients in the same statement (the sender's status shows them)."""
    params = {"node": node, "message_id": message_id}
    if with_recipients:
        return session.scalars(_REPORT_WITH_RECIPIENTS, params).unique().first()
    return session.scalar(_REPORT_BY_LINK, params)


def find_recipient_by_token(session: Session, token: str) -> Recipient | None:
    """Look a release token up by its hash; malformed tokens never reach the database."""
    if not links.is_token_shaped(token):
        return None
    return session.scalar(select(Recipient).where(Recipient.token_hash == links.token_hash(token)))


def mask_address(address: str) -> str:
    """Show enough of an address for a sender to recognise it, not enough to harvest it."""
    local, _, domain = address.partition("@")
    if not domain:
        return "***"
    shown = local[:1] if len(local) <= 3 else local[:2]
    return f"{shown}{'*' * 3}@{domain}"
