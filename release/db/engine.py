"""The SQLAlchemy engine and sessions, shared by web and worker processes.

One database is the whole shared state. SQLite is tuned for a single machine (WAL, a busy
timeout, foreign keys); PostgreSQL is used as it is.
"""

from __future__ import annotations

import functools
import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool, QueuePool

# Connections cross threads (the pool hands them out) and wait up to 30 s for the write lock.
SQLITE_CONNECT_ARGS = {"check_same_thread": False, "timeout": 30}


class Database:
    """Owns the engine and the session factory for one database URL."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.is_postgres = self.url.get_backend_name() == "postgresql"
        self.engine = self._create_engine(url, echo)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # For requests that only read (GET/HEAD): each statement runs on its own (autocommit).
        # PostgreSQL saves the BEGIN and ROLLBACK round trips (READ COMMITTED gives each
        # statement its own snapshot anyway); SQLite skips BEGIN IMMEDIATE, so a page view
        # never waits for the write lock a busy worker holds (WAL lets it read meanwhile).
        self.read_engine = self._create_reader(url, echo)
        self.read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)
        # A forked child (gunicorn worker) must not use the parent's pooled connections.
        os.register_at_fork(after_in_child=functools.partial(_forget_parent_connections, weakref.ref(self)))

    def _create_engine(self, url: str, echo: bool) -> Engine:
        # hide_parameters: error messages (and tracebacks in logs) show the SQL, never the
        # values (comments, addresses, user names).
        kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
        if self.is_sqlite:
            kwargs["connect_args"] = SQLITE_CONNECT_ARGS
            if self.url.database in (None, "", ":memory:"):
                raise ValueError("an in-memory SQLite database cannot be shared by web and worker; use a file")
            # Writers open a connection each time: measured, a pool made the worker's jobs
            # ~15 % more expensive on SQLite (the reads below are pooled).
            kwargs["poolclass"] = NullPool
        else:
            # pool_pre_ping: a pooled connection the server closed (restart, idle timeout) is
            # found at checkout and replaced, so a request never runs on it (here and below).
            kwargs.update(pool_size=10, max_overflow=20, pool_recycle=1800, pool_pre_ping=True)
        engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(engine, "connect", _sqlite_on_connect)
            event.listen(engine, "begin", _sqlite_on_begin)
        return engine

    def _create_reader(self, url: str, echo: bool) -> Engine:
        # A pool of its own whose connections never open a transaction, so none needs the
        # ROLLBACK the pool otherwise sends when a connection comes back (a round trip on
        # PostgreSQL per page view: about 0.1 ms of CPU and 0.4 ms of wall time here).
        if self.is_postgres:
            return create_engine(url, echo=echo, isolation_level="AUTOCOMMIT", pool_reset_on_return=None,
                                 pool_size=5, max_overflow=20, pool_recycle=1800, pool_pre_ping=True,
                                 hide_parameters=True)  # fmt: skip
        # Pooled, so the PRAGMAs run once per connection, not once per page view; a pooled
        # connection holds no lock (nothing begins a transaction on it). 5x the page views
        # per second of one connection and BEGIN IMMEDIATE per request (bench/web.py).
        engine = create_engine(url, echo=echo, poolclass=QueuePool, pool_size=5, max_overflow=20, hide_parameters=True,
                               pool_reset_on_return=None, connect_args=SQLITE_CONNECT_ARGS)  # fmt: skip
        event.listen(engine, "connect", _sqlite_on_connect)
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

    @property
    def engines(self) -> tuple[Engine, ...]:
        """Writer and reader, each with its own pool (for event listeners that must see every
        statement)."""
        return (self.engine, self.read_engine)

    def dispose(self) -> None:
        """Close pooled connections (tests, shutdown)."""
        for engine in self.engines:
            engine.dispose()


def _forget_parent_connections(ref: weakref.ref[Database]) -> None:
    db = ref()
    if db is not None:
        for engine in db.engines:
            engine.dispose(close=False)  # the parent still owns those sockets and files


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
    # (The read engine has no such hook: each of its statements is its own transaction.)
    connection.exec_driver_sql("BEGIN IMMEDIATE")
