"""Retention settings: validation messages, audit trail, effect at once."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import delete, select, update

from release.db.models import AuditEntry, AuditLogIsAppendOnly, Setting
from tests.support.console import Console
from tests.support.visitor import report_path


def _save(console: Console, client: object, short: str, long: str, record: str):  # type: ignore[no-untyped-def]
    data = {"short_hours": short, "long_days": long, "record_days": record}
    return console.post(client, "/admin/settings", "/admin/settings", data)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("short", "long", "record", "message"),
    [
        ("0", "7", "90", "Short retention must be between 1 and 720 hours."),
        ("721", "7", "90", "Short retention must be between 1 and 720 hours."),
        ("48", "2", "90", "Long retention must be longer than short retention."),
        ("24", "400", "900", "Long retention must be between 1 and 365 days."),
        ("24", "7", "3", "Record retention must be at least as long as long retention."),
        ("24", "7", "4000", "Record retention must be between 1 and 3650 days."),
        ("abc", "7", "90", "Not a valid integer value."),
    ],
)
def test_invalid_values_are_explained_and_not_stored(
    console: Console, short: str, long: str, record: str, message: str
) -> None:
    client = console.login()
    response = _save(console, client, short, long, record)
    assert response.status_code == 400
    assert message in response.text
    with console.stack.services.db.session() as session:
        assert session.scalars(select(Setting)).all() == []


def test_change_is_audited_and_applies_to_report_links_at_once(console: Console) -> None:
    stack = console.stack
    three_hours_ago = int(time.time()) - 3 * 3600
    link = report_path(stack, "msg-retention-1", issued_at=three_hours_ago)
    assert stack.new_client().get(link).status_code == 200  # default short retention: 24 h

    client = console.login()
    saved = _save(console, client, "2", "5", "30")
    assert saved.status_code == 303
    assert "applies now" in client.get("/admin/settings").text

    assert stack.new_client().get(link).status_code == 410  # older than the new 2 h
    audit = client.get("/admin/audit").text
    assert "retention.short_hours" in audit and "24 → 2" in audit and "7 → 5" in audit and "90 → 30" in audit
    with stack.services.db.session() as session:
        retention = stack.services.ctx.retention(session)
    assert (retention.short_hours, retention.long_days, retention.record_days) == (2, 5, 30)

    # Saving the same values again changes nothing and logs nothing.
    _save(console, client, "2", "5", "30")
    with stack.services.db.session() as session:
        changes = session.scalars(select(AuditEntry).where(AuditEntry.action == "retention.changed")).all()
        assert len(changes) == 3
        assert {c.actor for c in changes} == {"alice-admin"}


def test_audit_entries_cannot_be_changed_or_deleted(console: Console) -> None:
    db = console.stack.services.db
    with db.session() as session:
        entry = session.scalars(select(AuditEntry)).first()
        assert entry is not None
        entry.detail = "rewritten"
        with pytest.raises(AuditLogIsAppendOnly):
            session.flush()
        session.rollback()
        entry = session.scalars(select(AuditEntry)).first()
        session.delete(entry)
        with pytest.raises(AuditLogIsAppendOnly):
            session.flush()
        session.rollback()
        with pytest.raises(AuditLogIsAppendOnly):
            session.execute(update(AuditEntry).values(detail="x"))
        with pytest.raises(AuditLogIsAppendOnly):
            session.execute(delete(AuditEntry))
        session.rollback()
        assert all(e.detail != "rewritten" for e in session.scalars(select(AuditEntry)))
