"""The SQLAlchemy engine and sessions, shared by web and worker processes.

One database is the whole shared state. SQLite is tuned for a single machine (WAL, a busy
timeout, foreign keys); PostgreSQL is used as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from .liveness import check_on_checkout, note_checkin


class Database:
    """Owns the engine and the session factory for one database URL."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.is_postgres = self.url.get_backend_name() == "postgresql"
        self.engine = self._create_engine(url, echo)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # For requests that only read (GET/HEAD): on PostgreSQL each statement runs on its own
        # (autocommit), which saves the BEGIN and ROLLBACK round trips per request; READ
        # COMMITTED gives each statement its own snapshot anyway. SQLite keeps its sessions
        # (its BEGIN is the event below, which autocommit would not skip).
        self.read_sessions = self.sessions
        if self.is_postgres:
            autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
            self.read_sessions = sessionmaker(autocommit, expire_on_commit=False)

    def _create_engine(self, url: str, echo: bool) -> Engine:
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            if self.url.database in (None, "", ":memory:"):
                raise ValueError("an in-memory SQLite database cannot be shared by web and worker; use a file")
            # SQLite connections are cheap and file locks are per connection: no pool.
            kwargs["poolclass"] = NullPool
        else:
            # No pool_pre_ping (a round trip per checkout): liveness.py checks the socket
            # locally and pings only connections that sat idle; see there.
            kwargs.update(pool_size=10, max_overflow=20, pool_recycle=1800)
        engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(engine, "connect", _sqlite_on_connect)
            event.listen(engine, "begin", _sqlite_on_begin)
        else:
            event.listen(engine.pool, "checkin", note_checkin)
            event.listen(engine.pool, "checkout", check_on_checkout(engine.dialect))
        return engine

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that rolls back on error and always closes."""
        session = self.sessions()
        try:
            yield session
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        """Close pooled connections (tests, shutdown)."""
        self.engine.dispose()


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy own transactions (pysqlite's implicit BEGIN is disabled), so that
    # _sqlite_on_begin can take the write lock up front and readers never deadlock writers.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_on_begin(connection: Any) -> None:
    # IMMEDIATE: a transaction that will write gets the lock at BEGIN, so two writers
    # queue on busy_timeout instead of failing with "database is locked" on upgrade.
    connection.exec_driver_sql("BEGIN IMMEDIATE")
