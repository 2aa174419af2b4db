"""What admins do in the console: search reports, read one report's history, act on copies
and jobs, change retention. Each action writes its audit entry in the same transaction as
its effect and only writes rows and jobs: the worker talks to the gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session, selectinload

from release.config import RetentionSettings
from release.core import history, retention
from release.core import purge as enforcement
from release.core.reports import settle_report
from release.db.models import AuditEntry, Event, Job, Recipient, Report, utcnow
from release.db.paging import PAGE_SIZE, Page, paginate
from release.db.states import JobKind, JobState, RecipientState, ReportState
from release.gateway import stored
from release.jobs import queue as jobs
from release.jobs.registry import JobRegistry, Target
from release.jobs.wake import wake_workers_on_commit

FILTER_FIELDS = ("sender", "recipient", "subject", "message_id", "node", "status", "date_from", "date_to")
# The copy states an admin may release or notify again.
ACTIONABLE_STATES = (RecipientState.NOTIFIED, RecipientState.NOTIFY_PENDING, RecipientState.FAILED)


class ActionRefused(Exception):
    """The action does not apply to the row as it is now; the message says why."""


# -- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportFilter:
    """The reports list's search form, parsed from the query string."""

    values: dict[str, str] = field(default_factory=dict)
    date_from: date | None = None
    date_to: date | None = None
    errors: tuple[str, ...] = ()

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> ReportFilter:
        """Keep what is usable; explain what is not (a bad date is ignored, not fatal)."""
        values = {k: args.get(k, "").strip()[:320] for k in FILTER_FIELDS if args.get(k, "").strip()}
        errors: list[str] = []
        if values.get("status") and values["status"] not in list(ReportState):
            errors.append(f"Unknown status {values.pop('status')!r}.")
        dates: dict[str, date | None] = {}
        for name in ("date_from", "date_to"):
            dates[name] = None
            if name in values:
                try:
                    dates[name] = date.fromisoformat(values[name])
                except ValueError:
                    errors.append(f"{values.pop(name)!r} is not a date (YYYY-MM-DD).")
        return cls(values, dates["date_from"], dates["date_to"], tuple(errors))

    def conditions(self) -> list[Any]:
        """SQL conditions on Report; text matches are case-insensitive substrings."""
        v = self.values
        where: list[Any] = []
        if "sender" in v:
            where.append(Report.envelope_sender.icontains(v["sender"], autoescape=True))
        if "subject" in v:
            where.append(Report.subject.icontains(v["subject"], autoescape=True))
        if "message_id" in v:
            where.append(Report.message_id.icontains(v["message_id"], autoescape=True))
        if "node" in v:
            where.append(Report.node == v["node"])
        if "status" in v:
            where.append(Report.state == v["status"])
        if "recipient" in v:
            match = Recipient.address.icontains(v["recipient"], autoescape=True)
            where.append(select(Recipient.id).where(Recipient.report_id == Report.id, match).exists())
        if self.date_from:
            where.append(Report.created_at >= datetime.combine(self.date_from, datetime.min.time(), UTC))
        if self.date_to:
            end = datetime.combine(self.date_to, datetime.min.time(), UTC) + timedelta(days=1)
            where.append(Report.created_at < end)
        return where


def search_reports(session: Session, flt: ReportFilter, page: int = 1) -> Page[Report]:
    """Newest first, 50 a page; recipients loaded in one extra query (no N+1)."""
    query = (
        select(Report)
        .where(*flt.conditions())
        .options(selectinload(Report.recipients))
        .order_by(Report.created_at.desc(), Report.id.desc())
    )
    return paginate(session, query, page)


@dataclass(frozen=True)
class ReportDetail:
    """Everything the report page shows."""

    report: Report
    events: list[Event]
    jobs: list[Job]


def report_detail(session: Session, report_id: int, job_types: JobRegistry) -> ReportDetail | None:
    """The report with its copies, its history (oldest first) and its jobs."""
    report = session.scalar(select(Report).where(Report.id == report_id).options(selectinload(Report.recipients)))
    if report is None:
        return None
    events = session.scalars(select(Event).where(Event.report_id == report_id).order_by(Event.at, Event.id)).all()
    recipient_ids = [r.id for r in report.recipients]
    mine: ColumnElement[bool] = Job.kind.in_(job_types.targeting(Target.REPORT)) & (Job.ref_id == report_id)
    if recipient_ids:
        mine = or_(mine, Job.kind.in_(job_types.targeting(Target.COPY)) & Job.ref_id.in_(recipient_ids))
    found = session.scalars(select(Job).where(mine).order_by(Job.id)).all()
    return ReportDetail(report, list(events), list(found))


def audit_page(session: Session, page: int = 1, *, action: str | None = None) -> Page[AuditEntry]:
    """The audit log (optionally one action), newest first."""
    where = [AuditEntry.action == action] if action else []
    query = select(AuditEntry).where(*where).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
    return paginate(session, query, page)


# -- acting -------------------------------------------------------------------------------------


def _locked_recipient(session: Session, recipient_id: int) -> Recipient:
    recipient = session.get(Recipient, recipient_id, with_for_update=True)
    if recipient is None:
        raise ActionRefused("That copy no longer exists.")
    return recipient


def _record(session: Session, actor: str, action: str, recipient: Recipient, detail: str = "") -> None:
    """The copy's history (shown on the report page) and the audit log, in one go."""
    history.record(session, f"admin:{actor}", action, recipient.report, recipient, detail)
    what = f"{recipient.report.node}/{recipient.report.message_id}#{recipient.queue}"
    history.audit(session, actor, f"copy.{action}", f"recipient:{recipient.id}", f"{what} {detail}".strip())


def release_copy(session: Session, recipient_id: int, actor: str, now: datetime | None = None) -> Recipient:
    """Queue the release of a copy on the admin's say-so (also before or without a
    notification); commits."""
    now = now or utcnow()
    recipient = _locked_recipient(session, recipient_id)
    if recipient.state not in ACTIONABLE_STATES:
        raise ActionRefused(f"A copy that is {recipient.state.replace('_', ' ')} cannot be released.")
    if recipient.expires_at <= now:
        raise ActionRefused("This copy is past its retention; it is deleted from the gateway.")
    recipient.state = RecipientState.RELEASE_REQUESTED
    recipient.release_requested_at = now
    _record(session, actor, "release_requested", recipient)
    jobs.enqueue(session, JobKind.RELEASE, recipient.id)
    session.commit()
    settle_report(session, recipient.report_id)  # it may have been the last one waiting for mail
    return recipient


def resend_notification(session: Session, recipient_id: int, actor: str, now: datetime | None = None) -> Recipient:
    """Mail the recipient their release link again; commits."""
    now = now or utcnow()
    recipient = _locked_recipient(session, recipient_id)
    if recipient.state not in ACTIONABLE_STATES:
        raise ActionRefused(f"A copy that is {recipient.state.replace('_', ' ')} gets no new notification.")
    if recipient.expires_at <= now:
        raise ActionRefused("This copy is past its retention; there is nothing left to release.")
    if jobs.pending_for(session, JobKind.NOTIFY, recipient.id) is not None:
        raise ActionRefused("A notification for this copy is already on its way.")
    recipient.state = RecipientState.NOTIFY_PENDING
    recipient.error = None
    recipient.notified_at = None  # a new sending: counted again, and a new Message-ID
    report = recipient.report
    if report.state == ReportState.FAILED:
        report.state, report.error = ReportState.LOCATING, None  # settles again once the mail is out
    _record(session, actor, "resend_requested", recipient)
    jobs.enqueue(session, JobKind.NOTIFY, recipient.id)
    session.commit()
    return recipient


def delete_copy(session: Session, recipient_id: int, actor: str) -> Recipient:
    """Take the copy out of reach at once (no release from now on) and queue its deletion
    on the gateway; commits."""
    recipient = _locked_recipient(session, recipient_id)
    if recipient.state == RecipientState.RELEASED:
        raise ActionRefused("This copy was released; the gateway no longer holds it.")
    recipient.state = RecipientState.EXPIRED
    _record(session, actor, "delete_requested", recipient)
    jobs.enqueue(session, JobKind.DELETE, recipient.id)
    session.commit()
    settle_report(session, recipient.report_id)
    return recipient


def pending_approvals(session: Session) -> list[Recipient]:
    """Releases the policy held back, oldest request first (the approvals queue)."""
    query = (
        select(Recipient)
        .where(Recipient.state == RecipientState.APPROVAL_PENDING)
        .options(selectinload(Recipient.report))
        .order_by(Recipient.release_requested_at, Recipient.id)
        .limit(PAGE_SIZE)
    )
    return list(session.scalars(query))


def decide_release(session: Session, recipient_id: int, actor: str, *, approve: bool, reason: str) -> Recipient:
    """Approve (queue the release) or deny (final) a held-back release, audited in the same
    transaction; the recipient is mailed the outcome by the worker; commits."""
    recipient = _locked_recipient(session, recipient_id)
    if recipient.state != RecipientState.APPROVAL_PENDING:
        raise ActionRefused(f"This copy is {recipient.state.replace('_', ' ')}; there is nothing to decide.")
    recipient.decision_reason = reason[:2000]
    if approve:
        recipient.state = RecipientState.RELEASE_REQUESTED
        recipient.release_requested_at = utcnow()
        jobs.enqueue(session, JobKind.RELEASE, recipient.id)
    else:
        recipient.state = RecipientState.RELEASE_DENIED
    _record(session, actor, "release_approved" if approve else "release_denied", recipient, reason[:2000])
    jobs.enqueue(session, JobKind.OUTCOME_MAIL, recipient.id)
    session.commit()
    return recipient


def retry_job(session: Session, job_id: int, actor: str, job_types: JobRegistry) -> Job:
    """Give a dead job a fresh set of attempts, restoring the state its failure set; commits."""
    job = session.get(Job, job_id, with_for_update=True)
    if job is None or job.state != JobState.DEAD:
        raise ActionRefused("Only a job that gave up can be retried.")
    if jobs.pending_for(session, job.kind, job.ref_id) is not None:
        raise ActionRefused("Another attempt of this job is already queued.")
    job_type = job_types.get(job.kind)
    row: Report | Recipient | None = None
    if job_type is not None and job_type.retry_from is not None:
        if job_type.target == Target.REPORT:
            row = session.get(Report, job.ref_id, with_for_update=True)
        else:
            row = session.get(Recipient, job.ref_id, with_for_update=True)
        failed, again = job_type.retry_from
        if row is not None and row.state == failed:
            row.state, row.error = again, None
        if isinstance(row, Recipient) and job.kind == JobKind.RELEASE:
            # An admin's retry is the decision a lost relay answer waits for (docs/operations.md):
            # the copy the service keeps is sent again.
            report = row.report
            if stored.forget_release_attempt(session, report.node, report.message_id, row.queue):
                history.audit(session, actor, "copy.resend_confirmed", f"recipient:{row.id}",
                              "re-injection of a copy whose earlier outcome was unknown")  # fmt: skip
    job.state, job.attempts, job.run_after, job.finished_at = JobState.QUEUED, 0, utcnow(), None
    history.audit(session, actor, "job.retried", f"job:{job.id}", f"{job.kind} #{job.ref_id}")
    if isinstance(row, Report):
        history.record(session, f"admin:{actor}", "retry_requested", row, detail=job.kind)
    elif isinstance(row, Recipient):
        history.record(session, f"admin:{actor}", "retry_requested", row.report, row, job.kind)
        if job.kind == JobKind.NOTIFY and row.report.state == ReportState.FAILED:
            row.report.state, row.report.error = ReportState.LOCATING, None
    wake_workers_on_commit(session)
    session.commit()
    return job


def change_retention(
    session: Session, values: Mapping[str, int], actor: str, defaults: RetentionSettings
) -> list[tuple[str, int, int]]:
    """Store new retention times and run enforcement soon, so they apply at once; commits."""
    changes = retention.set_retention(session, values, actor, defaults)
    if changes:
        enforcement.run_soon(session, utcnow())
    session.commit()
    return changes
