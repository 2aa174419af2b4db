"""The database layer's promises that callers rely on (SQLite's single writer especially)."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, String, bindparam, event, insert, literal, select, text

from release.core.summaries import RecipientSummary, ReportSummaries
from release.db import migrate
from release.db.engine import Database
from release.db.models import Job, Recipient, Report


def test_sqlite_reads_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    """A page view (read session) is answered while the worker holds the write lock."""
    db = Database(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    migrate.upgrade(db)
    try:
        with db.session() as writer:
            writer.execute(text("UPDATE reports SET state = state"))  # inside BEGIN IMMEDIATE
            started = time.monotonic()
            with db.read_sessions() as reader:
                assert reader.scalars(select(Report)).all() == []
            assert time.monotonic() - started < 1.0
            # The lock is real: another writer has to wait for it.
            other = sqlite3.connect(tmp_path / "r.sqlite3", timeout=0.2, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                raise AssertionError("a second writer got the lock")
            except sqlite3.OperationalError as exc:
                assert "locked" in str(exc)
            finally:
                other.close()
            writer.commit()
    finally:
        db.dispose()


def test_a_forked_child_does_not_reuse_the_parents_connections(tmp_path: Path) -> None:
    """gunicorn forks workers: a pooled connection must never serve two processes."""
    db = Database(f"sqlite:///{tmp_path / 'f.sqlite3'}")
    migrate.upgrade(db)
    try:
        with db.read_sessions() as reader:  # leaves a connection in the reader's pool
            reader.execute(text("SELECT 1"))
        before = db.read_engine.pool.checkedin()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child reports its pool's state, then leaves at once
            os.write(write, str(db.read_engine.pool.checkedin()).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        assert before == 1 and os.read(read, 16) == b"0"
        with db.read_sessions() as reader:  # the parent's connection still works
            assert reader.execute(text("SELECT 1")).scalar() == 1
    finally:
        db.dispose()


def test_engines_lists_each_pool_once(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'e.sqlite3'}")
    try:
        assert db.engines == (db.engine, db.read_engine) and db.engine is not db.read_engine
    finally:
        db.dispose()


def _summary_rows(db: Database) -> None:
    """A report with two copies and a running locate job, written as the flow writes them."""
    now = datetime.now(UTC)
    with db.session() as session:
        report_id = session.execute(
            insert(Report.__table__).returning(Report.__table__.c.id),
            {"node": "mx1", "message_id": "m-1", "link_issued_at": now, "state": "locating", "comment": "hi",
             "sender_ip": "192.0.2.1", "created_at": now, "updated_at": now},
        ).scalar_one()  # fmt: skip
        session.execute(
            insert(Recipient.__table__),
            [{"report_id": report_id, "queue": q, "address": f"r{q}@example.com", "state": "notify_pending",
              "token_nonce": f"n{q}", "token_hash": f"h{q}", "expires_at": now} for q in (2, 1)],
        )  # fmt: skip
        session.execute(
            insert(Job.__table__),
            {"kind": "locate", "ref_id": report_id, "state": "running", "attempts": 3, "run_after": now},
        )
        session.commit()


def test_report_summaries_read_a_report_its_copies_and_its_locate_attempts(database_url: str) -> None:
    """The sender pages' lookup: the report, its copies in queue order, the attempts of its
    unfinished locate job; None for a link nobody reported."""
    db = Database(database_url)
    migrate.upgrade(db)
    try:
        _summary_rows(db)
        summaries = ReportSummaries(db)
        found = summaries.find("mx1", "m-1")
        assert found is not None and found.state == "locating" and found.locate_attempts == 3
        assert found.recipients == (
            RecipientSummary("r1@example.com", "notify_pending"), RecipientSummary("r2@example.com", "notify_pending"),
        )  # fmt: skip
        assert summaries.find("mx1", "nobody") is None
    finally:
        db.dispose()


@contextmanager
def sent_sql(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """(SQL, parameters) of every statement the engine hands its driver meanwhile."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_the_summary_lookup_has_its_constants_in_its_sql(database_url: str) -> None:
    """Constants are part of the SQL the engine sends (SQLite re-plans a statement whose
    subquery compares a bound value with an index, on every run), quoted as the dialect quotes;
    values given per visit stay parameters. Engine events see the statement."""
    db = Database(database_url)
    migrate.upgrade(db)
    try:
        with sent_sql(db.read_engine) as seen:
            assert ReportSummaries(db).find("mx1", "m-1") is None
        [(sql, parameters)] = seen
        assert "jobs.kind = 'locate'" in sql and "('queued', 'running')" in sql and "LIMIT 1" in sql
        assert "'mx1'" not in sql and "m-1" not in sql
        assert {"mx1", "m-1"} <= set(parameters.values() if isinstance(parameters, dict) else parameters)
        awkward = 'it\'s; -- \\ "q"'
        with sent_sql(db.read_engine) as seen, db.read_sessions() as session:
            echo = select(literal(awkward, literal_execute=True), bindparam("given", type_=String))
            assert session.execute(echo, {"given": "o'k"}).all() == [(awkward, "o'k")]
        assert "it''s" in seen[0][0] and "o'k" not in seen[0][0]
    finally:
        db.dispose()


@pytest.mark.postgres
def test_report_summaries_survive_a_terminated_connection(postgres_url: str) -> None:
    """A pooled connection the server terminated is replaced at checkout, not used."""
    db = Database(postgres_url)
    migrate.upgrade(db)
    summaries = ReportSummaries(db)
    try:
        assert summaries.find("mx1", "m") is None
        assert db.read_engine.pool.checkedin() == 1
        with db.session() as session:
            killed = session.execute(
                text("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                     "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                     "AND backend_type = 'client backend' AND query LIKE '%FROM reports LEFT OUTER JOIN%'")
            ).scalar()  # fmt: skip
        assert killed >= 1  # the reader's pooled connection among them
        time.sleep(0.2)  # the server's goodbye reaches the idle socket
        assert summaries.find("mx1", "m") is None
    finally:
        db.dispose()
