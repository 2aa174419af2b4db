"""What the sender's pages need of a report, read in one Core statement.

The report link page runs this on every visit and the status script on every poll: the
report's state, its recipients' addresses and states, and how often its unfinished locate
job has run (a status says "we keep trying" after a failed attempt), nothing else, as plain
rows (no ORM entities to build and track). For a link nobody has reported yet it is one
index lookup on (node, message_id) that returns no row.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import String, bindparam, literal, select

from release.db.engine import Database
from release.db.models import Job, Recipient, Report
from release.db.states import JobKind
from release.jobs.queue import UNFINISHED


@dataclass(frozen=True)
class RecipientSummary:
    address: str
    state: str


@dataclass(frozen=True)
class ReportSummary:
    """A report as its sender sees it (``recipients`` in queue order)."""

    id: int
    state: str
    recipients: tuple[RecipientSummary, ...]
    locate_attempts: int | None = None  # of its unfinished locate job; None: there is none


_reports, _recipients, _jobs = Report.__table__, Recipient.__table__, Job.__table__
# The statement's constants are written into its SQL, quoted by the dialect (literal_execute):
# with them bound, SQLite plans the subquery's indexed comparison (jobs.kind = ?) anew on
# every run, 21 µs a lookup instead of 2. The values of a visit (node, message id) stay bound.
_LOCATE, _ONE = literal(JobKind.LOCATE, String, literal_execute=True), literal(1, literal_execute=True)
_UNFINISHED = bindparam("unfinished", UNFINISHED, String, expanding=True, literal_execute=True)
# The newest unfinished locate job's attempts, as jobs.pending_for finds it (index (kind, ref_id)).
_LOCATE_ATTEMPTS = (
    select(_jobs.c.attempts)
    .where(_jobs.c.kind == _LOCATE, _jobs.c.ref_id == _reports.c.id, _jobs.c.state.in_(_UNFINISHED))
    .order_by(_jobs.c.id.desc())
    .limit(_ONE)
    .scalar_subquery()
)
# Built once; the (node, message_id) unique index finds the report, (report_id, queue) its copies.
SUMMARY_BY_LINK = (
    select(_reports.c.id, _reports.c.state, _LOCATE_ATTEMPTS, _recipients.c.address, _recipients.c.state)
    .select_from(_reports.outerjoin(_recipients, _recipients.c.report_id == _reports.c.id))
    .where(_reports.c.node == bindparam("node"), _reports.c.message_id == bindparam("message_id"))
    .order_by(_recipients.c.queue)
)


class ReportSummaries:
    """Reads report summaries of one database, each in a read-only session of its own (a
    statement of its own: autocommit, see Database.read_sessions)."""

    def __init__(self, db: Database) -> None:
        self._sessions = db.read_sessions

    def find(self, node: str, message_id: str) -> ReportSummary | None:
        """The report for a (node, message id) with its recipients, or None if none was made."""
        with self._sessions() as session:
            rows = session.execute(SUMMARY_BY_LINK, {"node": node, "message_id": message_id}).all()
        if not rows:
            return None
        recipients = tuple(RecipientSummary(address, state) for *_, address, state in rows if address is not None)
        report_id, state, attempts = rows[0][:3]
        return ReportSummary(id=report_id, state=state, recipients=recipients, locate_attempts=attempts)
