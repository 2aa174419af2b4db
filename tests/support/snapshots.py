"""Snapshots of the database and the simulator, to prove a request changed nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from release.db.models import Base, Job, Recipient, Report
from tests.support.stack import Stack


def row_count(stack: Stack, model: Any) -> int:
    """Rows of ``model`` in the stack's database."""
    with stack.services.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def db_snapshot(stack: Stack) -> dict[str, Any]:
    """Row counts of every table plus the states of reports, recipients and jobs."""
    with stack.services.db.session() as session:
        counts = {
            table.name: session.scalar(select(func.count()).select_from(table)) for table in Base.metadata.sorted_tables
        }
        reports = session.execute(
            select(Report.id, Report.state, Report.updated_at, Report.comment).order_by(Report.id)
        ).all()
        recipients = session.execute(
            select(
                Recipient.id,
                Recipient.state,
                Recipient.notified_at,
                Recipient.release_requested_at,
                Recipient.release_attempted_at,
                Recipient.updated_at,
            ).order_by(Recipient.id)
        ).all()
        jobs = session.execute(
            select(Job.id, Job.kind, Job.ref_id, Job.state, Job.attempts, Job.run_after).order_by(Job.id)
        ).all()
    return {
        "counts": counts,
        "reports": [tuple(r) for r in reports],
        "recipients": [tuple(r) for r in recipients],
        "jobs": [tuple(j) for j in jobs],
    }


def sim_snapshot(stack: Stack) -> list[tuple[Any, ...]]:
    """Every copy the simulator holds, with its state and quarantine."""
    return sorted((c.transaction, c.queue, c.state, c.quarantine) for c in stack.sim.items())
