"""A sender's report: submit it (web), then locate the held copies, move them to the long
quarantine and create one recipient row per copy (worker). Safe to repeat after a crash."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, case, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from release.core import history, links
from release.core.context import Context, call_gateway, end_transaction
from release.db.models import Recipient, Report, utcnow
from release.db.states import FINAL_RECIPIENT_STATES, FINAL_REPORT_STATES, JobKind, RecipientState, ReportState
from release.gateway import QuarantinedCopy
from release.jobs import queue as jobs
from release.jobs.outcomes import PermanentFailure, RetryLater

SUBJECT_LIMIT = 1000
ERROR_LIMIT = 2000


@dataclass(frozen=True)
class Submission:
    """What the sender's form produced; already CAPTCHA-checked by the view."""

    link: links.ReportLink
    comment: str
    sender_ip: str


class Reports:
    """Submitting and locating reports."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def submit(self, session: Session, submission: Submission) -> Report:
        """Store the report and its locate job in one transaction; a repeat returns the first."""
        link = submission.link
        existing = find_report(session, link.node, link.message_id)
        if existing is not None:
            return existing
        report = Report(
            node=link.node,
            message_id=link.message_id,
            link_issued_at=datetime.fromtimestamp(link.issued_at, tz=self.ctx.clock().tzinfo),
            state=ReportState.PENDING,
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
        history.record(session, "sender:" + submission.sender_ip, "reported", report)
        jobs.enqueue(session, JobKind.LOCATE, report.id)
        session.commit()
        return report

    def locate(self, session: Session, report_id: int) -> None:
        """:meth:`locate_many` for one report; raises what kept it from finishing."""
        raise_failure(self.locate_many(session, [report_id]), report_id)

    def locate_many(self, session: Session, report_ids: Sequence[int]) -> dict[int, Exception]:
        """Find the held copies, move them to the long quarantine, create recipients, queue mail.

        One find and one move request per node for the whole batch (the API takes several
        ids); returns, per report id, why that report did not finish (absent: done).
        """
        settings, gateways = self.ctx.settings, self.ctx.gateways
        reports = session.scalars(
            select(Report).where(Report.id.in_(report_ids)).options(selectinload(Report.recipients))
        ).all()
        failures: dict[int, Exception] = {}
        by_node: dict[str, list[Report]] = {}
        for report in reports:
            if report.state in FINAL_REPORT_STATES:
                continue
            if settings.node(report.node) is None or report.node not in gateways:
                failures[report.id] = PermanentFailure(f"node {report.node!r} is no longer configured")
                continue
            by_node.setdefault(report.node, []).append(report)
        end_transaction(session)
        for name, group in by_node.items():
            try:
                self._locate_on_node(session, name, group)
            except RetryLater as exc:  # this node is not answering; other nodes go on
                session.rollback()
                failures.update((report.id, exc) for report in group)
        return failures

    def _locate_on_node(self, session: Session, name: str, reports: list[Report]) -> None:
        settings = self.ctx.settings
        node, gateway = settings.node(name), self.ctx.gateways[name]
        assert node is not None  # checked by locate_many
        holding = self.ctx.holding(name)
        found = call_gateway(gateway.find_many, [r.message_id for r in reports])
        held = {r.id: [c for c in found.get(r.message_id, []) if c.quarantine in holding] for r in reports}
        known = {r.id: {x.queue for x in r.recipients} for r in reports}
        live, events = [], []
        for report in reports:
            if not held[report.id] and not known[report.id]:
                report.state = ReportState.NOT_FOUND
                events.append(history.event_row(history.SYSTEM, "not_found", report))
            else:
                if report.state == ReportState.PENDING:
                    # Found: from here on the sender sees progress (while the gateway was not
                    # answering, the report stayed "pending" with retries, as DESIGN §1 says).
                    report.state = ReportState.LOCATING
                live.append(report)
        history.record_many(session, events)
        end_transaction(session)
        short = [(r.message_id, c.queue) for r in live for c in held[r.id] if c.quarantine != node.long_quarantine]
        if short and call_gateway(gateway.move_many, short, node.long_quarantine) < len(short):
            # Some copy vanished between find and move (the gateway's own cleanup): keep only
            # what is really held now, so nobody is mailed about a copy that is gone.
            again = call_gateway(gateway.find_many, [r.message_id for r in live])
            held = {
                r.id: [c for c in again.get(r.message_id, []) if c.quarantine == node.long_quarantine] for r in live
            }
        expires_at = self.ctx.clock() + self.ctx.retention(session).long
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
            history.record_many(
                session, [history.event_row(history.SYSTEM, "retention_extended", r.report, r) for r in added]
            )
            jobs.enqueue_many(session, JobKind.NOTIFY, [r.id for r in added])
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
        secret = self.ctx.settings.app.secret_key
        added = []
        for copy in copies:
            nonce = links.new_token_nonce()
            recipient = Recipient(
                report=report,
                queue=copy.queue,
                address=copy.recipient[:320],
                state=RecipientState.NOTIFY_PENDING,
                token_nonce=nonce,
                token_hash=links.token_hash(links.release_token(secret, nonce)),
                spam_score=copy.spam_score,
                quarantine=long_q,
                held_in=copy.quarantine,
                expires_at=expires_at,
            )
            added.append(recipient)
        return added

    def on_dead(self, session: Session, report_id: int, error: str) -> None:
        """The locate job ran out of attempts: show the failure instead of 'still working'."""
        report = session.get(Report, report_id)
        if report is not None and report.state not in FINAL_REPORT_STATES:
            report.state = ReportState.FAILED
            report.error = error[:ERROR_LIMIT]
            history.record(session, history.SYSTEM, "failed", report, detail=error)


def fail_copy(session: Session, recipient_id: int, error: str) -> None:
    """A copy's job ran out of attempts: show the copy failed and settle its report; commits."""
    recipient = session.get(Recipient, recipient_id)
    if recipient is None or recipient.state in FINAL_RECIPIENT_STATES:
        return
    recipient.state = RecipientState.FAILED
    recipient.error = error[:ERROR_LIMIT]
    history.record(session, history.SYSTEM, "failed", recipient.report, recipient, error)
    session.commit()
    settle_report(session, recipient.report_id)


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
    pending = select(Recipient.id).where(mine, Recipient.state == RecipientState.NOTIFY_PENDING)
    reached_any = select(Recipient.id).where(mine, Recipient.state != RecipientState.FAILED).exists()
    session.execute(
        update(Report)
        .where(Report.id.in_(report_ids), Report.state == ReportState.LOCATING, ~pending.exists())
        .values(
            state=case((reached_any, ReportState.NOTIFIED.value), else_=ReportState.FAILED.value),
            error=case((reached_any, Report.error), else_="no recipient could be notified"),
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()


def raise_failure(failures: Mapping[int, Exception], ref_id: int) -> None:
    """Raise what kept ``ref_id`` from finishing in a batch (one-job form of a batch step)."""
    if ref_id in failures:
        raise failures[ref_id]


# Built once; the (node, message_id) unique index serves it. (The sender's pages read
# core.summaries instead.)
_REPORT_BY_LINK = select(Report).where(Report.node == bindparam("node"), Report.message_id == bindparam("message_id"))


def find_report(session: Session, node: str, message_id: str) -> Report | None:
    """The report for a (node, message id), if one was made."""
    return session.scalar(_REPORT_BY_LINK, {"node": node, "message_id": message_id})
