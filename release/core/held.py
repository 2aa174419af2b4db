"""Held messages on halon6 nodes whose senders learn of the link from us (sender_notice = "ndr").

Where a held copy does not survive ``Reject()`` in a 6.x EOD script, the node accepts the
message instead, holds a copy per recipient and pushes the report link's fields here. The
web edge verifies them like a report link and calls :func:`accept_push` (a row and its job
in one transaction, once per message); the worker's :meth:`HeldNotices.send` finds the
copies and mails the envelope sender one non-delivery report carrying the link.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from release.core import history, links
from release.core.context import Context, call_gateway, end_transaction
from release.db.models import SenderNotice
from release.db.states import JobKind, NoticeState
from release.gateway import QuarantinedCopy
from release.jobs import queue as jobs
from release.jobs.outcomes import RetryLater
from release.mail.ndr import HeldReport, build_ndr

log = logging.getLogger(__name__)

NDR_MODE = "ndr"  # the node setting sender_notice that lets a node push here
ERROR_LIMIT = 2000
NULL_SENDERS = ("", "<>")


class PushRefused(Exception):
    """A genuine push from a node that is not configured to have the service notify senders."""


def accept_push(session: Session, link: links.ReportLink, signature: str, notice_mode: str) -> bool:
    """Store a verified push and its "ndr" job in one transaction; commits.

    Returns True for a new message, False for a repeat of one already stored (one report
    per message, however often the gateway retries). ``notice_mode`` is the node's
    ``sender_notice``: anything but "ndr" raises :class:`PushRefused`.
    """
    if notice_mode != NDR_MODE:
        raise PushRefused(f"node {link.node!r} rejects with the link itself (sender_notice = {notice_mode!r})")
    if find_notice(session, link.node, link.message_id) is not None:
        return False
    notice = SenderNotice(
        node=link.node,
        message_id=link.message_id,
        link_issued_at=datetime.fromtimestamp(link.issued_at, tz=UTC),
        signature=signature,
        state=NoticeState.QUEUED,
    )
    session.add(notice)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()  # the same push, stored by another request a moment ago
        return False
    jobs.enqueue(session, JobKind.NDR, notice.id)
    session.commit()
    return True


def find_notice(session: Session, node: str, message_id: str) -> SenderNotice | None:
    """The stored push for (node, message id), if any (the unique index serves it)."""
    return session.scalar(select(SenderNotice).where(SenderNotice.node == node, SenderNotice.message_id == message_id))


class HeldNotices:
    """The worker's "ndr" step."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def send(self, session: Session, notice_id: int) -> None:
        """Find the held copies and mail the sender one report; RetryLater on an outage.

        A copy gone means nothing to tell (not_found); a bounce (null sender) is never
        answered (skipped). A crash between the server's 250 and our commit repeats the
        mail with the same Message-ID, so the receiving side can drop the duplicate.
        """
        notice = session.get(SenderNotice, notice_id)
        # Failed runs again only when an admin retries the job that gave up (a finished job
        # never runs again); anything else was done before (a replay after a crash) or purged.
        if notice is None or notice.state not in (NoticeState.QUEUED, NoticeState.FAILED):
            return
        gateway = self.ctx.gateway(notice.node)
        holding = self.ctx.holding(notice.node)
        retention = self.ctx.retention(session)
        end_transaction(session)
        copies = [c for c in call_gateway(gateway.find, notice.message_id) if c.quarantine in holding]
        if not copies:
            self._finish(session, notice, NoticeState.NOT_FOUND, "no held copy on the node")
            return
        sender = copies[0].sender.strip()
        notice.envelope_sender = sender[:320]
        notice.recipient_count = len(copies)
        if sender in NULL_SENDERS:
            self._finish(session, notice, NoticeState.SKIPPED, "a bounce (null sender) is never answered")
            return
        try:
            report = self._report(notice, copies, retention.short_hours)
            env = self.ctx.mail_templates.for_address(sender)
            message = build_ndr(report, sender=self.ctx.settings.smtp.sender, jinja_env=env)
        except ValueError as exc:  # an address that cannot go into a mail safely: no retry helps
            self._finish(session, notice, NoticeState.FAILED, f"cannot build the report: {exc}")
            return
        end_transaction(session)
        (result,) = self.ctx.mailer.send([message])
        if result.temporary:
            raise RetryLater(f"SMTP: {result.error}")
        if result.ok:
            notice.sent_at = self.ctx.clock()
            self._finish(session, notice, NoticeState.SENT, result.error)
        else:
            self._finish(session, notice, NoticeState.FAILED, f"SMTP refused the report: {result.error}")

    def _report(self, notice: SenderNotice, copies: list[QuarantinedCopy], short_hours: int) -> HeldReport:
        settings = self.ctx.settings
        issued_at = int(notice.link_issued_at.timestamp())
        return HeldReport(
            to_address=copies[0].sender.strip(),
            recipients=[c.recipient for c in copies],
            subject=copies[0].subject,
            received_at=copies[0].received_at,
            # Signed afresh with the first key: the same link, valid through a key rotation.
            report_url=links.build_report_url(
                settings.app.public_url, settings.links.keys[0], notice.node, notice.message_id, issued_at
            ),
            valid_until=notice.link_issued_at + timedelta(hours=short_hours),
            hours=short_hours,
            reporting_host=public_host(settings.app.public_url),
            message_id=ndr_message_id(settings.app.public_url, notice.node, notice.message_id),
        )

    def _finish(self, session: Session, notice: SenderNotice, state: NoticeState, detail: str = "") -> None:
        """Record the outcome; failures also go to the audit log (admins act on those)."""
        notice.state = state
        notice.error = detail[:ERROR_LIMIT] or None
        if state == NoticeState.FAILED:
            history.audit(session, history.SYSTEM, "ndr.failed", f"message:{notice.node}/{notice.message_id}", detail)
        session.commit()
        log.info("held message %s/%s: sender report %s%s", notice.node, notice.message_id, state.value,
                 f" ({detail})" if detail else "")  # fmt: skip

    def on_dead(self, session: Session, notice_id: int, error: str) -> None:
        """The job ran out of attempts (SMTP or the gateway down for long): show it failed."""
        notice = session.get(SenderNotice, notice_id)
        if notice is not None and notice.state == NoticeState.QUEUED:
            self._finish(session, notice, NoticeState.FAILED, error)


def public_host(public_url: str) -> str:
    """The host name of the service's public URL (Reporting-MTA, Message-ID domain)."""
    return urlsplit(public_url).hostname or "localhost"


def ndr_message_id(public_url: str, node: str, message_id: str) -> str:
    """Stable for one held message: a resend after a crash carries the same Message-ID."""
    digest = hashlib.sha256(f"{node}\0{message_id}".encode()).hexdigest()[:32]
    return f"<ndr-{digest}@{public_host(public_url)}>"
