"""The domain steps: report, locate + extend + notify, release. The single source of truth.

Web views call :meth:`Flow.submit_report` and :meth:`Flow.request_release`, which only write
rows and jobs. The worker runs :meth:`Flow.locate`, :meth:`Flow.notify` and
:meth:`Flow.release`; each is safe to repeat after a crash at any point.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy import String, bindparam, case, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload, selectinload

from release.config import Settings
from release.core import links
from release.core.retention import Retention, RetentionCache
from release.db.models import Event, Recipient, Report, utcnow
from release.gateway import Gateway, GatewayError, GatewayRejected, QuarantinedCopy
from release.jobs import queue as jobs
from release.mail.compose import Notification, build_notification
from release.mail.sending import Mailer
from release.mail.templates import MailTemplates

SUBJECT_LIMIT = 1000
FINAL_REPORT_STATES = frozenset({"notified", "not_found", "failed"})
FINAL_RECIPIENT_STATES = frozenset({"released", "expired", "failed", "release_denied", "deleted"})
NOTIFY_WINDOW = timedelta(hours=24)
RECORD_EVERY = 8  # notifications sent between two commits (the pooled SMTP session stays open)


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

    def retention(self, session: Session | Callable[[], Session]) -> Retention:
        """The retention in force (admin changes made in this process at once, others within
        ``retention.CACHE_SECONDS``); ``session`` may be a function that opens one."""
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
        """:meth:`locate_many` for one report; raises what kept it from finishing."""
        _raise_failure(self.locate_many(session, [report_id]), report_id)

    def locate_many(self, session: Session, report_ids: Sequence[int]) -> dict[int, Exception]:
        """Find the held copies, move them to the long quarantine, create recipients, queue mail.

        One find and one move request per node for the whole batch (the API takes several
        ids); returns, per report id, why that report did not finish (absent: done).
        """
        reports = session.scalars(
            select(Report).where(Report.id.in_(report_ids)).options(selectinload(Report.recipients))
        ).all()
        failures: dict[int, Exception] = {}
        by_node: dict[str, list[Report]] = {}
        for report in reports:
            if report.state in FINAL_REPORT_STATES:
                continue
            if self.settings.node(report.node) is None or report.node not in self.gateways:
                failures[report.id] = PermanentFailure(f"node {report.node!r} is no longer configured")
                continue
            by_node.setdefault(report.node, []).append(report)
        _end_transaction(session)
        for name, group in by_node.items():
            try:
                self._locate_on_node(session, name, group)
            except RetryLater as exc:  # this node is not answering; other nodes go on
                session.rollback()
                failures.update((report.id, exc) for report in group)
        return failures

    def _locate_on_node(self, session: Session, name: str, reports: list[Report]) -> None:
        node, gateway = self.settings.node(name), self.gateways[name]
        assert node is not None  # checked by locate_many
        holding = (node.short_quarantine, node.long_quarantine, *self.settings.policy.high_risk_quarantines)
        found = self._call(gateway.find_many, [r.message_id for r in reports])
        held = {r.id: [c for c in found.get(r.message_id, []) if c.quarantine in holding] for r in reports}
        known = {r.id: {x.queue for x in r.recipients} for r in reports}
        live, events = [], []
        for report in reports:
            if not held[report.id] and not known[report.id]:
                report.state = "not_found"
                events.append(_event_row("system", "not_found", report))
            else:
                if report.state == "pending":
                    # Found: from here on the sender sees progress (while the gateway was not
                    # answering, the report stayed "pending" with retries, as DESIGN §1 says).
                    report.state = "locating"
                live.append(report)
        _insert_events(session, events)
        _end_transaction(session)
        short = [(r.message_id, c.queue) for r in live for c in held[r.id] if c.quarantine != node.long_quarantine]
        if short and self._call(gateway.move_many, short, node.long_quarantine) < len(short):
            # Some copy vanished between find and move (the gateway's own cleanup): keep only
            # what is really held now, so nobody is mailed about a copy that is gone.
            again = self._call(gateway.find_many, [r.message_id for r in live])
            held = {
                r.id: [c for c in again.get(r.message_id, []) if c.quarantine == node.long_quarantine] for r in live
            }
        expires_at = self.clock() + self.retention(session).long
        added = [
            recipient
            for r in live
            for recipient in self._new_recipients(
                r, [c for c in held[r.id] if c.queue not in known[r.id]], node.long_quarantine, expires_at
            )
        ]
        if added:
            session.add_all(added)
            session.flush()  # one flush for the batch: the events and jobs need the ids
            _insert_events(session, [_event_row("system", "retention_extended", r.report, r) for r in added])
            jobs.enqueue_many(session, "notify", [r.id for r in added])
        session.commit()
        settle_reports(session, [r.id for r in live])

    def _new_recipients(
        self, report: Report, copies: list[QuarantinedCopy], long_q: str, expires_at: datetime
    ) -> list[Recipient]:
        if not copies:
            return []
        first = copies[0]
        report.envelope_sender = first.sender[:320]
        report.subject = first.subject[:SUBJECT_LIMIT]
        report.received_at = first.received_at
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
        return added

    def notify(self, session: Session, recipient_id: int) -> None:
        """:meth:`notify_many` for one recipient; raises what kept it from finishing."""
        _raise_failure(self.notify_many(session, [recipient_id]), recipient_id)

    def notify_many(self, session: Session, recipient_ids: Sequence[int]) -> dict[int, Exception]:
        """Mail recipients their release links (never the sender's comment), all over one SMTP
        session; returns, per recipient id, why that one did not finish (absent: done)."""
        recipients = session.scalars(
            select(Recipient)
            .where(Recipient.id.in_(recipient_ids))
            .options(joinedload(Recipient.report))
            .order_by(Recipient.id)
        ).all()
        # A recipient no longer waiting is a replay after a crash between our commit and the
        # settle below: settle now, or a report whose last mail went out stays "locating".
        to_settle = {r.report_id for r in recipients if r.state != "notify_pending"}
        waiting = [r for r in recipients if r.state == "notify_pending"]
        # Not yet counted against the recipient's daily cap (a retry after an SMTP failure or
        # a crash already holds its place): take a place or wait for one.
        failures: dict[int, Exception] = self._reserve_notifications(
            session, [r for r in waiting if r.notified_at is None]
        )
        events: list[dict[str, Any]] = []
        sending: list[tuple[Recipient, EmailMessage]] = []
        for recipient in waiting:
            if recipient.id in failures:
                continue
            try:
                sending.append((recipient, self._notification(recipient, recipient.report)))
            except ValueError as exc:  # an address or value that cannot go into a mail safely
                events.append(self._notify_failed(recipient, f"cannot build the notification: {exc}"))
                to_settle.add(recipient.report_id)
        _insert_events(session, events)
        _end_transaction(session)
        # A few mails per send, each recorded at once: a crash between the server's 250 and
        # our commit repeats at most that many mails (same Message-ID), not the whole batch.
        for start in range(0, len(sending), RECORD_EVERY):
            chunk = sending[start : start + RECORD_EVERY]
            results = self.mailer.send([message for _, message in chunk])
            events = []
            for (recipient, _), result in zip(chunk, results, strict=True):
                if result.temporary:
                    failures[recipient.id] = RetryLater(f"SMTP: {result.error}")
                    continue
                if result.ok:
                    recipient.state = "notified"
                    recipient.notified_at = self.clock()
                    events.append(_event_row("system", "notified", recipient.report, recipient))
                else:
                    events.append(self._notify_failed(recipient, f"SMTP refused the notification: {result.error}"))
                to_settle.add(recipient.report_id)
            _insert_events(session, events)
            session.commit()
        settle_reports(session, sorted(to_settle))
        return failures

    @staticmethod
    def _notify_failed(recipient: Recipient, error: str) -> dict[str, Any]:
        recipient.state = "failed"
        recipient.notified_at = None  # never reached the inbox: frees its place in the cap
        recipient.error = error[:2000]
        return _event_row("system", "notify_failed", recipient.report, recipient, recipient.error)

    def _reserve_notifications(self, session: Session, recipients: list[Recipient]) -> dict[int, Exception]:
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
        cap = self.settings.limits.notifications_per_recipient_per_day
        now = self.clock()
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
        session.add(Event(**_event_row(actor, action, report, recipient, detail)))


def _end_transaction(session: Session) -> None:
    """Commit before a network call, so no row lock, SQLite write lock or pooled
    connection is held while the gateway or SMTP server takes its time."""
    session.commit()


def can_request_release(recipient: Recipient) -> bool:
    """Notified, or its mail is on the way (``notified_at`` is stamped before SMTP): a quick
    recipient may click before the worker commits "notified"."""
    return recipient.state == "notified" or (recipient.state == "notify_pending" and recipient.notified_at is not None)


def settle_report(session: Session, report_id: int) -> None:
    """:func:`settle_reports` for one report."""
    settle_reports(session, [report_id])


def settle_reports(session: Session, report_ids: Sequence[int]) -> None:
    """Once no recipient waits for its mail, mark a report notified (or failed if no
    notification could be delivered at all); commits.

    One conditional UPDATE, run after the caller committed its own recipients' changes: of
    two notifications finishing at once, the later commit always sees both done.
    """
    if not report_ids:
        return
    mine = Recipient.report_id == Report.id
    pending = select(Recipient.id).where(mine, Recipient.state == "notify_pending")
    reached_any = select(Recipient.id).where(mine, Recipient.state != "failed").exists()
    session.execute(
        update(Report)
        .where(Report.id.in_(report_ids), Report.state == "locating", ~pending.exists())
        .values(
            state=case((reached_any, "notified"), else_="failed"),
            error=case((reached_any, Report.error), else_="no recipient could be notified"),
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()


def _raise_failure(failures: Mapping[int, Exception], ref_id: int) -> None:
    if ref_id in failures:
        raise failures[ref_id]


def _cap_lock_key(address: str) -> int:
    """The advisory lock that serialises one address's notification count (PostgreSQL)."""
    return int.from_bytes(hashlib.sha256(b"notify-cap:" + address.encode()).digest()[:8], "big", signed=True)


def _event_row(
    actor: str, action: str, report: Report | None, recipient: Recipient | None = None, detail: str = ""
) -> dict[str, Any]:
    """An event's columns: added as an ORM object one at a time, INSERTed by Core in batches."""
    return {
        "actor": actor,
        "action": action,
        "report_id": report.id if report else None,
        "recipient_id": recipient.id if recipient else None,
        "detail": detail[:2000],
    }


def _insert_events(session: Session, rows: list[dict[str, Any]]) -> None:
    """Events of a batch in one INSERT (Core: the worker never reads them back)."""
    if rows:
        session.execute(insert(Event), rows)


# The notifications counted against the daily cap, for a batch's addresses; served by the
# index on (lower(address), notified_at).
COUNTED_NOTIFICATIONS = select(Recipient.id, func.lower(Recipient.address), Recipient.notified_at).where(
    func.lower(Recipient.address).in_(bindparam("addresses", expanding=True, type_=String())),
    Recipient.notified_at > bindparam("since"),
)


# Built once; the (node, message_id) unique index serves it. (The sender's pages read
# report_view.report_summary instead.)
_REPORT_BY_LINK = select(Report).where(Report.node == bindparam("node"), Report.message_id == bindparam("message_id"))


def find_report(session: Session, node: str, message_id: str) -> Report | None:
    """The report for a (node, message id), if one was made."""
    return session.scalar(_REPORT_BY_LINK, {"node": node, "message_id": message_id})


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
