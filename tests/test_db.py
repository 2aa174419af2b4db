"""The database layer's promises that callers rely on (SQLite's single writer especially)."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from sqlalchemy import select, text

from release import migrate
from release.db import Database
from release.models import Report


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
