"""The database layer's promises that callers rely on (SQLite's single writer especially)."""

from __future__ import annotations

import os
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import String, bindparam, insert, literal, select, text
from sqlalchemy.exc import DBAPIError

from release.core.summaries import SUMMARY_BY_LINK
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


def test_a_driver_statement_returns_what_sqlalchemy_returns(database_url: str) -> None:
    """The sender pages' lookup, run on the driver, gives the rows a Session gives."""
    db = Database(database_url)
    migrate.upgrade(db)
    try:
        _summary_rows(db)
        statement = db.driver_statement(SUMMARY_BY_LINK)
        for params in ({"node": "mx1", "message_id": "m-1"}, {"node": "mx1", "message_id": "nobody"}):
            with db.read_sessions() as session:
                expected = [tuple(row) for row in session.execute(SUMMARY_BY_LINK, params)]
            assert [tuple(row) for row in statement.all(params)] == expected
        assert [row[3] for row in statement.all({"node": "mx1", "message_id": "m-1"})] == [
            "r1@example.com", "r2@example.com",
        ]  # fmt: skip
    finally:
        db.dispose()


def test_a_driver_statement_writes_its_constants_into_the_sql(database_url: str) -> None:
    """Constants are part of the SQL (SQLite re-plans a statement whose subquery compares a
    bound value with an index, on every run), quoted as the dialect quotes; values given per
    run stay parameters."""
    db = Database(database_url)
    try:
        summary = db.driver_statement(SUMMARY_BY_LINK)
        assert "jobs.kind = 'locate'" in summary.sql and "('queued', 'running')" in summary.sql
        assert "'mx1'" not in summary.sql
        awkward = 'it\'s; -- \\ "q"'
        echo = db.driver_statement(select(literal(awkward), bindparam("given", type_=String)))
        assert "it''s" in echo.sql
        assert [tuple(row) for row in echo.all({"given": "o'k"})] == [(awkward, "o'k")]
    finally:
        db.dispose()


def test_a_driver_statement_fails_as_sqlalchemy_would(database_url: str) -> None:
    """Errors come out as SQLAlchemy's (the 503 page and the GET retry catch those), and the
    pooled connection stays usable after a statement error."""
    db = Database(database_url)
    migrate.upgrade(db)
    try:
        broken = db.driver_statement(select(text("id")).select_from(text("no_such_table")))
        with pytest.raises(DBAPIError) as raised:
            broken.all({})
        assert not raised.value.connection_invalidated
        assert db.driver_statement(SUMMARY_BY_LINK).all({"node": "mx1", "message_id": "m"}) == []
    finally:
        db.dispose()


@pytest.mark.postgres
def test_a_driver_statement_survives_a_terminated_connection(postgres_url: str) -> None:
    """A pooled connection the server terminated is replaced at checkout, not used."""
    db = Database(postgres_url)
    migrate.upgrade(db)
    statement = db.driver_statement(SUMMARY_BY_LINK)
    params = {"node": "mx1", "message_id": "m"}
    try:
        assert statement.all(params) == []
        assert db.read_engine.pool.checkedin() == 1
        with db.session() as session:
            killed = session.execute(
                text("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                     "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                     "AND backend_type = 'client backend' AND query LIKE '%FROM reports LEFT OUTER JOIN%'")
            ).scalar()  # fmt: skip
        assert killed >= 1  # the reader's pooled connection among them
        time.sleep(0.2)  # the server's goodbye reaches the idle socket
        assert statement.all(params) == []
    finally:
        db.dispose()
