"""The one writer of history: events (what happened to a report or a copy, shown on its
pages) and audit entries (what an admin, or the system on their behalf, did)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from release.db.models import AuditEntry, Event, Recipient, Report

DETAIL_LIMIT = 2000
SYSTEM = "system"


def event_row(
    actor: str, action: str, report: Report | None = None, recipient: Recipient | None = None, detail: str = ""
) -> dict[str, Any]:
    """An event's columns, for :func:`record_many` (a batch written in one INSERT)."""
    return {
        "actor": actor,
        "action": action,
        "report_id": report.id if report else recipient.report_id if recipient else None,
        "recipient_id": recipient.id if recipient else None,
        "detail": detail[:DETAIL_LIMIT],
    }


def record(
    session: Session,
    actor: str,
    action: str,
    report: Report | None = None,
    recipient: Recipient | None = None,
    detail: str = "",
) -> None:
    """Add one event to the caller's transaction."""
    session.add(Event(**event_row(actor, action, report, recipient, detail)))


def record_many(session: Session, rows: list[dict[str, Any]]) -> None:
    """Events of a batch in one INSERT (Core: the worker never reads them back)."""
    if rows:
        session.execute(insert(Event), rows)


def audit(session: Session, actor: str, action: str, target: str = "", detail: str = "") -> None:
    """Add one audit entry to the caller's transaction (the audit log is append-only)."""
    session.add(AuditEntry(actor=actor, action=action, target=target, detail=detail))
