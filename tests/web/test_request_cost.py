"""Per-request database work of the hot pages: a regression (an N+1, an uncached settings
read) changes the statement count and fails here. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import event

from release.config import RetentionSettings
from release.core import retention
from release.db.models import Setting
from tests.support.console import Console, seed_report
from tests.support.stack import Stack
from tests.support.visitor import report_path, submit_report


@contextmanager
def statements(stack: Stack) -> Iterator[list[str]]:
    """Every SQL statement the app sends through its engines while the block runs (BEGIN
    excluded)."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if not statement.startswith("BEGIN"):  # SQLite's explicit BEGIN IMMEDIATE
            seen.append(statement)

    engines = stack.services.db.engines  # GETs read through the reader engine
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


def test_report_page_runs_one_statement(stack: Stack) -> None:
    path = report_path(stack, "cost-fresh-1")
    client = stack.new_client()
    assert client.get(path).status_code == 200  # fills the retention cache
    with statements(stack) as seen:
        assert client.get(path).status_code == 200
    assert len(seen) == 1, seen  # the report lookup; retention comes from the cache
    assert "FROM reports" in seen[0]


def test_status_of_a_final_report_runs_one_statement(console: Console) -> None:
    stack = console.stack
    report = console.reported(["cost@example.com", "cost2@example.com"])
    path = report_path(stack, report.message_id).replace("/report?", "/report/status?")
    client = stack.new_client()
    assert client.get(path).status_code == 200
    with statements(stack) as seen:
        response = client.get(path)
    assert response.status_code == 200 and len(response.get_json()["recipients"]) == 2
    assert len(seen) == 1, seen  # report and its recipients joined; no retry lookup once final
    with statements(stack) as seen:
        assert client.get(report_path(stack, report.message_id)).status_code == 200  # the status page
    assert len(seen) == 1, seen


def test_status_of_a_pending_report_runs_one_statement(stack: Stack) -> None:
    tx = stack.sim.add_message("anna@partner.example", ["cost@example.com"], "Hello")
    path = report_path(stack, tx)
    assert submit_report(stack.new_client(), stack, path).status_code == 303
    status = path.replace("/report?", "/report/status?")
    client = stack.new_client()
    assert client.get(status).status_code == 200
    with statements(stack) as seen:
        assert client.get(status).get_json()["state"] == "pending"
    assert len(seen) == 1, seen  # the retry lookup (the locate job's attempts) is in the same statement
    assert "FROM jobs" in seen[0]


def test_admin_reports_list_does_not_grow_with_rows(console: Console) -> None:
    db = console.stack.services.db
    client = console.login()

    def counted() -> int:
        with statements(console.stack) as seen:
            assert client.get("/admin/reports").status_code == 200
        return len(seen)

    with db.session() as session:
        for _ in range(3):
            seed_report(session)
        session.commit()
    few = counted()
    with db.session() as session:
        for _ in range(40):
            seed_report(session, address="many@example.com")
        session.commit()
    assert counted() == few
    assert few <= 5  # the signed-in admin, count, page, recipients (selectin)


def test_retention_cache_rereads_after_its_ttl_and_at_once_after_a_local_write(stack: Stack) -> None:
    now = [100.0]
    cache = retention.RetentionCache(RetentionSettings(), ttl=5.0, clock=lambda: now[0])
    db = stack.services.db
    with db.session() as session:
        assert cache.get(session).short_hours == RetentionSettings.short_hours
        # Another process writes (no invalidation here): seen only once the TTL has passed.
        session.add(Setting(key=retention.SHORT_KEY, value="3", updated_by="elsewhere"))
        session.commit()
        now[0] += 4.9
        assert cache.get(session).short_hours == RetentionSettings.short_hours
        now[0] += 0.2
        assert cache.get(session).short_hours == 3
        # This process writes: at once, without waiting for the TTL.
        values = {"short_hours": 5, "long_days": 7, "record_days": 90}
        retention.set_retention(session, values, "test", RetentionSettings())
        session.commit()
        assert cache.get(session).short_hours == 5


def test_short_retention_change_expires_links_within_the_bound(stack: Stack) -> None:
    """Changes by another process reach link checks within retention.CACHE_SECONDS."""
    path = report_path(
        stack, "cost-expiring-1", issued_at=int((stack.services.ctx.clock() - timedelta(hours=4)).timestamp())
    )
    client = stack.new_client()
    assert client.get(path).status_code == 200
    with stack.services.db.session() as session:
        session.add(Setting(key=retention.SHORT_KEY, value="2", updated_by="elsewhere"))
        session.commit()
    stack.services.ctx.retention_cache.ttl = 0.0  # as if CACHE_SECONDS had passed
    assert client.get(path).status_code == 410
