"""Retention enforcement: delete copies past their retention through the gateway API, purge
the service's own old records (and used CAPTCHA solutions and sign-in counts once they no
longer matter), and delete single copies admins asked to remove.

Every step is safe to repeat: a gateway delete that matches nothing means Halon already
removed the copy (its own per-quarantine retention), which is the outcome we wanted.
Unreported copies in the short quarantine are left to Halon's own retention; the service
never lists a whole quarantine (see docs/operations.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from release.config import Settings
from release.core import history, previews, sign_in_backoff
from release.core.retention import current
from release.db.models import Job, Recipient, Report, SenderNotice, utcnow
from release.db.replay import purge_used_solutions
from release.db.states import FINISHED_JOB_STATES, LIVE_RECIPIENT_STATES, JobKind, JobState, NoticeState, RecipientState
from release.gateway import Gateway, GatewayError, stored
from release.jobs import queue as jobs
from release.jobs.outcomes import PermanentFailure, RetryLater
from release.jobs.wake import wake_workers_on_commit
from release.jobs.worker import Worker

log = logging.getLogger(__name__)
SYSTEM = history.SYSTEM


@dataclass
class EnforcementResult:
    """What one run did (or, dry, would do)."""

    dry_run: bool
    deleted: list[str] = field(default_factory=list)  # "node/message#queue" per copy
    already_gone: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    reports_purged: int = 0
    jobs_purged: int = 0
    notices_purged: int = 0
    stored_copies: int = 0  # kept by the service for rspamd nodes, dropped past retention
    stored_bytes: int = 0  # compressed bytes those freed
    preview_contents: int = 0  # Halon messages' bytes kept for previews, no longer needed

    def lines(self) -> list[str]:
        """Human-readable summary for the CLI."""
        verb = "would delete" if self.dry_run else "deleted"
        out = [f"{verb} copy {c}" for c in self.deleted]
        out += [f"{'would mark' if self.dry_run else 'marked'} expired (already gone) {c}" for c in self.already_gone]
        out += [f"error {e}" for e in self.errors]
        purge = "would purge" if self.dry_run else "purged"
        out.append(f"{verb} {len(self.deleted) + len(self.already_gone)} copies past retention")
        if self.stored_copies:
            out.append(f"{verb} {self.stored_copies} stored copies past retention ({self.stored_bytes} bytes freed)")
        if self.preview_contents:
            out.append(f"{verb} {self.preview_contents} messages' preview contents no longer needed")
        out.append(
            f"{purge} {self.reports_purged} reports, {self.notices_purged} sender notices and "
            f"{self.jobs_purged} finished jobs past record retention"
        )
        return out


def _label(recipient: Recipient) -> str:
    return f"{recipient.report.node}/{recipient.report.message_id}#{recipient.queue}"


def _past_retention(now: datetime, long: timedelta) -> ColumnElement[bool]:
    # expires_at was fixed when the copy was located; a long retention shortened since then
    # applies at once (created_at + the current long retention).
    return or_(Recipient.expires_at <= now, Recipient.created_at <= now - long)


def enforce(
    session: Session, gateways: Mapping[str, Gateway], settings: Settings, now: datetime, dry_run: bool = False
) -> EnforcementResult:
    """Delete copies past retention (marking them expired) and purge old records; commits."""
    retention = current(session, settings.retention)
    result = EnforcementResult(dry_run=dry_run)
    due = select(Recipient).where(Recipient.state.in_(LIVE_RECIPIENT_STATES), _past_retention(now, retention.long))
    if dry_run:
        result.deleted = [_label(r) for r in session.scalars(due.order_by(Recipient.id))]
    else:
        _delete_expired(session, gateways, due, result)
    # What rspamd nodes pushed and no report holds: the service is their only quarantine.
    swept = stored.sweep(session, retention.short, retention.long, now, dry_run=dry_run)
    result.stored_copies, result.stored_bytes = swept.copies, swept.bytes_freed
    horizon = now - retention.short - retention.long
    result.preview_contents = previews.purge_contents(session, horizon, dry_run=dry_run)
    _purge(session, now - retention.records, result)
    if not dry_run:  # expired, so refused or forgotten anyway: nothing to show for a dry run
        purge_used_solutions(session, now)
        sign_in_backoff.purge(session, now)
    if dry_run:
        session.rollback()
    else:
        session.commit()
    return result


def _delete_expired(
    session: Session, gateways: Mapping[str, Gateway], due: Select[Recipient], result: EnforcementResult
) -> None:
    """One copy at a time, with no transaction open while the gateway works (an rspamd node's
    gateway writes to this same database); a copy settled meanwhile is left as it was settled."""
    skipped: list[int] = []
    while True:
        query = due.where(Recipient.id.notin_(skipped)) if skipped else due
        recipient = session.scalar(query.order_by(Recipient.id).limit(1))
        if recipient is None:
            return
        report, label = recipient.report, _label(recipient)
        node, message_id, queue = report.node, report.message_id, recipient.queue
        session.commit()
        gateway = gateways.get(node)
        try:
            if gateway is None:
                raise GatewayError(f"node {node!r} is no longer configured")
            affected = gateway.delete(message_id, [queue])
        except GatewayError as exc:
            # Left as it is: the next run tries again.
            skipped.append(recipient.id)
            result.errors.append(f"{label}: {exc}")
            log.warning("retention: could not delete %s: %s", label, exc)
            continue
        session.refresh(recipient, with_for_update=True)
        if recipient.state in LIVE_RECIPIENT_STATES:  # else another run or a person settled it
            gone = affected == 0
            (result.already_gone if gone else result.deleted).append(label)
            _mark_deleted(session, recipient, "retention", gone)
        session.commit()


def _mark_deleted(session: Session, recipient: Recipient, why: str, gone: bool) -> None:
    """The copy is no longer on the gateway: expired, in the history and the audit log."""
    recipient.state = RecipientState.EXPIRED
    detail = f"{why}: " + ("already gone from the gateway" if gone else "deleted from the gateway")
    history.record(session, SYSTEM, "deleted", recipient.report, recipient, detail)
    history.audit(session, SYSTEM, "copy.deleted", f"recipient:{recipient.id}", f"{_label(recipient)} {detail}")


def _purge(session: Session, cutoff: datetime, result: EnforcementResult) -> None:
    """Delete reports (with their copies' rows and history) and finished jobs older than
    the record retention; a report whose copy is somehow still live is kept."""
    live = select(Recipient.id).where(Recipient.report_id == Report.id, Recipient.state.in_(LIVE_RECIPIENT_STATES))
    old_reports = (Report.created_at < cutoff) & ~live.exists()
    old_jobs = Job.state.in_(FINISHED_JOB_STATES) & (Job.finished_at < cutoff)
    # Sender notices hold an envelope sender: kept as long as reports, then gone (unless queued).
    old_notices = (SenderNotice.created_at < cutoff) & (SenderNotice.state != NoticeState.QUEUED)
    if result.dry_run:
        result.reports_purged = session.scalar(select(func.count()).select_from(Report).where(old_reports)) or 0
        result.jobs_purged = session.scalar(select(func.count()).select_from(Job).where(old_jobs)) or 0
        result.notices_purged = session.scalar(select(func.count()).select_from(SenderNotice).where(old_notices)) or 0
        return
    # Events and recipients go with their report (ON DELETE CASCADE).
    reports = session.execute(delete(Report).where(old_reports).execution_options(synchronize_session=False))
    finished = session.execute(delete(Job).where(old_jobs).execution_options(synchronize_session=False))
    notices = session.execute(delete(SenderNotice).where(old_notices).execution_options(synchronize_session=False))
    result.reports_purged = int(getattr(reports, "rowcount", 0) or 0)
    result.jobs_purged = int(getattr(finished, "rowcount", 0) or 0)
    result.notices_purged = int(getattr(notices, "rowcount", 0) or 0)
    if result.reports_purged or result.jobs_purged or result.notices_purged:
        history.audit(session, SYSTEM, "records.purged", f"before {cutoff.isoformat()}",
                      f"{result.reports_purged} reports, {result.notices_purged} sender notices, "
                      f"{result.jobs_purged} jobs")  # fmt: skip


# -- the periodic job ---------------------------------------------------------------------------


def schedule(session: Session, run_after: datetime) -> bool:
    """Queue the periodic enforcement unless one is already queued (a unique index decides)."""
    try:
        with session.begin_nested():
            jobs.enqueue(session, JobKind.ENFORCE, 0, run_after=run_after)
    except IntegrityError:
        return False
    return True


def run_soon(session: Session, now: datetime) -> None:
    """Bring the queued enforcement forward (retention changed: apply it at once)."""
    session.execute(
        update(Job)
        .where(Job.kind == JobKind.ENFORCE, Job.state == JobState.QUEUED)
        .values(run_after=now)
        .execution_options(synchronize_session=False)
    )
    wake_workers_on_commit(session)


class Enforcer:
    """The worker's handlers for "enforce" and "delete" jobs."""

    def __init__(self, settings: Settings, gateways: Mapping[str, Gateway]) -> None:
        self.settings = settings
        self.gateways = gateways

    @property
    def interval(self) -> timedelta:
        return timedelta(minutes=self.settings.retention.enforce_every_minutes)

    def run_job(self, session: Session, _ref_id: int) -> None:
        """Enforce now, then queue the next run (committed with this job's completion)."""
        now = utcnow()
        result = enforce(session, self.gateways, self.settings, now)
        if result.deleted or result.already_gone or result.errors:
            log.info("retention: %s", "; ".join(result.lines()[-2:]))
        schedule(session, now + self.interval)

    def delete_copy(self, session: Session, recipient_id: int) -> None:
        """Delete one copy an admin asked to remove; gone already counts as done."""
        recipient = session.get(Recipient, recipient_id)
        if recipient is None or recipient.state == RecipientState.RELEASED:
            return
        gateway = self.gateways.get(recipient.report.node)
        if gateway is None:
            raise PermanentFailure(f"node {recipient.report.node!r} is no longer configured")
        message_id, queue = recipient.report.message_id, recipient.queue
        session.commit()  # no transaction open while the gateway works
        try:
            affected = gateway.delete(message_id, [queue])
        except GatewayError as exc:
            raise RetryLater(f"gateway: {exc}") from exc
        session.refresh(recipient)
        if recipient.state != RecipientState.RELEASED:
            _mark_deleted(session, recipient, "admin request", affected == 0)
        session.commit()

    def on_dead(self, session: Session, _ref_id: int, _error: str) -> None:
        """An enforcement that gave up must not end the schedule."""
        schedule(session, utcnow() + self.interval)


class EnforcingWorker(Worker):
    """A worker loop that makes sure the periodic enforcement is scheduled when it starts."""

    def run(self) -> None:
        """Schedule enforcement (if no run is queued), then process jobs until stopped."""
        with self.db.session() as session:
            schedule(session, utcnow())
            session.commit()
        super().run()
