"""What admins do in the console: search reports, read one report's history, act on copies
and jobs, change retention. Each action writes its audit entry in the same transaction as
its effect and only writes rows and jobs: the worker talks to the gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, text
from sqlalchemy.orm import Session, selectinload

from release.config import RetentionSettings
from release.core import purge as enforcement
from release.core import retention
from release.core.flow import settle_report
from release.db.models import REPORT_STATES, AuditEntry, Event, Job, Recipient, Report, utcnow
from release.jobs import queue as jobs

PAGE_SIZE = 50
FILTER_FIELDS = ("sender", "recipient", "subject", "message_id", "node", "status", "date_from", "date_to")
# What on_dead set when a job gave up, and what the job expects to find when it runs again.
RETRY_STATES = {"locate": ("failed", "pending"), "notify": ("failed", "notify_pending"),
                "release": ("failed", "release_requested")}  # fmt: skip


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
        if values.get("status") and values["status"] not in REPORT_STATES:
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


@dataclass(frozen=True)
class Page:
    """One page of reports and the total that matched."""

    reports: list[Report]
    total: int
    number: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // PAGE_SIZE))


def search_reports(session: Session, flt: ReportFilter, page: int = 1) -> Page:
    """Newest first, 50 a page; recipients loaded in one extra query (no N+1)."""
    where = flt.conditions()
    total = session.scalar(select(func.count()).select_from(Report).where(*where)) or 0
    page = max(1, min(page, max(1, -(-total // PAGE_SIZE))))
    rows = session.scalars(
        select(Report)
        .where(*where)
        .options(selectinload(Report.recipients))
        .order_by(Report.created_at.desc(), Report.id.desc())
        .offset((page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE)
    ).all()
    return Page(list(rows), total, page)


@dataclass(frozen=True)
class ReportDetail:
    """Everything the report page shows."""

    report: Report
    events: list[Event]
    jobs: list[Job]


def report_detail(session: Session, report_id: int) -> ReportDetail | None:
    """The report with its copies, its history (oldest first) and its jobs."""
    report = session.scalar(select(Report).where(Report.id == report_id).options(selectinload(Report.recipients)))
    if report is None:
        return None
    events = session.scalars(select(Event).where(Event.report_id == report_id).order_by(Event.at, Event.id)).all()
    recipient_ids = [r.id for r in report.recipients]
    mine: ColumnElement[bool] = (Job.kind == "locate") & (Job.ref_id == report_id)
    if recipient_ids:
        kinds = ("notify", "release", "delete", "discard", "outcome_mail")
        mine = or_(mine, Job.kind.in_(kinds) & Job.ref_id.in_(recipient_ids))
    found = session.scalars(select(Job).where(mine).order_by(Job.id)).all()
    return ReportDetail(report, list(events), list(found))


def audit_page(session: Session, page: int = 1, *, action: str | None = None) -> tuple[list[AuditEntry], int]:
    """The audit log (optionally one action), newest first, and the total count."""
    where = [AuditEntry.action == action] if action else []
    total = session.scalar(select(func.count()).select_from(AuditEntry).where(*where)) or 0
    rows = session.scalars(
        select(AuditEntry).where(*where).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
        .offset((max(1, page) - 1) * PAGE_SIZE).limit(PAGE_SIZE)
    ).all()  # fmt: skip
    return list(rows), total


# -- acting -------------------------------------------------------------------------------------


def _locked_recipient(session: Session, recipient_id: int) -> Recipient:
    recipient = session.get(Recipient, recipient_id, with_for_update=True)
    if recipient is None:
        raise ActionRefused("That copy no longer exists.")
    return recipient


def _record(session: Session, actor: str, action: str, recipient: Recipient, detail: str = "") -> None:
    """The copy's history (shown on the report page) and the audit log, in one go."""
    who = f"admin:{actor}"
    session.add(Event(actor=who, action=action, report_id=recipient.report_id, recipient_id=recipient.id,
                      detail=detail))  # fmt: skip
    target = f"recipient:{recipient.id}"
    what = f"{recipient.report.node}/{recipient.report.message_id}#{recipient.queue}"
    session.add(AuditEntry(actor=actor, action=f"copy.{action}", target=target, detail=f"{what} {detail}".strip()))


def release_copy(session: Session, recipient_id: int, actor: str, now: datetime | None = None) -> Recipient:
    """Queue the release of a copy on the admin's say-so (also before or without a
    notification); commits."""
    now = now or utcnow()
    recipient = _locked_recipient(session, recipient_id)
    if recipient.state not in ("notified", "notify_pending", "failed"):
        raise ActionRefused(f"A copy that is {recipient.state.replace('_', ' ')} cannot be released.")
    if recipient.expires_at <= now:
        raise ActionRefused("This copy is past its retention; it is deleted from the gateway.")
    recipient.state = "release_requested"
    recipient.release_requested_at = now
    _record(session, actor, "release_requested", recipient)
    jobs.enqueue(session, "release", recipient.id)
    session.commit()
    settle_report(session, recipient.report_id)  # it may have been the last one waiting for mail
    return recipient


def resend_notification(session: Session, recipient_id: int, actor: str, now: datetime | None = None) -> Recipient:
    """Mail the recipient their release link again; commits."""
    now = now or utcnow()
    recipient = _locked_recipient(session, recipient_id)
    if recipient.state not in ("notified", "notify_pending", "failed"):
        raise ActionRefused(f"A copy that is {recipient.state.replace('_', ' ')} gets no new notification.")
    if recipient.expires_at <= now:
        raise ActionRefused("This copy is past its retention; there is nothing left to release.")
    if jobs.pending_for(session, "notify", recipient.id) is not None:
        raise ActionRefused("A notification for this copy is already on its way.")
    recipient.state = "notify_pending"
    recipient.error = None
    recipient.notified_at = None  # a new sending: counted again, and a new Message-ID
    report = recipient.report
    if report.state == "failed":
        report.state, report.error = "locating", None  # settles again once the mail is out
    _record(session, actor, "resend_requested", recipient)
    jobs.enqueue(session, "notify", recipient.id)
    session.commit()
    return recipient


def delete_copy(session: Session, recipient_id: int, actor: str) -> Recipient:
    """Take the copy out of reach at once (no release from now on) and queue its deletion
    on the gateway; commits."""
    recipient = _locked_recipient(session, recipient_id)
    if recipient.state == "released":
        raise ActionRefused("This copy was released; the gateway no longer holds it.")
    recipient.state = "expired"
    _record(session, actor, "delete_requested", recipient)
    jobs.enqueue(session, "delete", recipient.id)
    session.commit()
    settle_report(session, recipient.report_id)
    return recipient


def pending_approvals(session: Session) -> list[Recipient]:
    """Releases the policy held back, oldest request first (the approvals queue)."""
    query = (
        select(Recipient)
        .where(Recipient.state == "approval_pending")
        .options(selectinload(Recipient.report))
        .order_by(Recipient.release_requested_at, Recipient.id)
        .limit(PAGE_SIZE)
    )
    return list(session.scalars(query))


def decide_release(session: Session, recipient_id: int, actor: str, *, approve: bool, reason: str) -> Recipient:
    """Approve (queue the release) or deny (final) a held-back release, audited in the same
    transaction; the recipient is mailed the outcome by the worker; commits."""
    recipient = _locked_recipient(session, recipient_id)
    if recipient.state != "approval_pending":
        raise ActionRefused(f"This copy is {recipient.state.replace('_', ' ')}; there is nothing to decide.")
    recipient.decision_reason = reason[:2000]
    if approve:
        recipient.state = "release_requested"
        recipient.release_requested_at = utcnow()
        jobs.enqueue(session, "release", recipient.id)
    else:
        recipient.state = "release_denied"
    _record(session, actor, "release_approved" if approve else "release_denied", recipient, reason[:2000])
    jobs.enqueue(session, "outcome_mail", recipient.id)
    session.commit()
    return recipient


def _wake_workers(session: Session) -> None:
    """Wake workers on commit, as jobs.enqueue does for a new job."""
    session.info["wake_workers"] = True
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {jobs.WAKE_CHANNEL}"))


def retry_job(session: Session, job_id: int, actor: str) -> Job:
    """Give a dead job a fresh set of attempts, restoring the state its failure set; commits."""
    job = session.get(Job, job_id, with_for_update=True)
    if job is None or job.state != "dead":
        raise ActionRefused("Only a job that gave up can be retried.")
    if jobs.pending_for(session, job.kind, job.ref_id) is not None:
        raise ActionRefused("Another attempt of this job is already queued.")
    row: Report | Recipient | None = None
    if job.kind in RETRY_STATES:
        if job.kind == "locate":
            row = session.get(Report, job.ref_id, with_for_update=True)
        else:
            row = session.get(Recipient, job.ref_id, with_for_update=True)
        failed, again = RETRY_STATES[job.kind]
        if row is not None and row.state == failed:
            row.state, row.error = again, None
    job.state, job.attempts, job.run_after, job.finished_at = "queued", 0, utcnow(), None
    target = f"job:{job.id}"
    session.add(AuditEntry(actor=actor, action="job.retried", target=target, detail=f"{job.kind} #{job.ref_id}"))
    report_id = row.id if isinstance(row, Report) else row.report_id if isinstance(row, Recipient) else None
    if report_id is not None:
        session.add(Event(actor=f"admin:{actor}", action="retry_requested", report_id=report_id,
                          recipient_id=row.id if isinstance(row, Recipient) else None, detail=job.kind))  # fmt: skip
    if isinstance(row, Recipient) and job.kind == "notify" and row.report.state == "failed":
        row.report.state, row.report.error = "locating", None
    _wake_workers(session)
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
