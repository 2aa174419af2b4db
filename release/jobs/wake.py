"""Waking workers the moment work is committed, instead of waiting for their next poll.

Across processes PostgreSQL delivers a NOTIFY on commit to every LISTENing worker; within one
process (demo, single-process server, tests) an after-commit hook sets an event. A session
that queued work marks itself once, with :func:`wake_workers_on_commit`; both paths follow.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Protocol

import psycopg
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from release.db.engine import Database

log = logging.getLogger("release.worker")
CHANNEL = "release_jobs"


def wake_workers_on_commit(session: Session) -> None:
    """Wake every worker when this session's transaction commits (never before, never on rollback)."""
    session.info["wake_workers"] = True
    if session.get_bind().dialect.name == "postgresql" and not _notified_in_transaction(session):
        # Delivered by PostgreSQL only if and when the transaction commits; once per
        # transaction is enough (PostgreSQL folds identical NOTIFYs into one anyway).
        session.execute(text(f"NOTIFY {CHANNEL}"))
        session.info["notified_in"] = weakref.ref(session.get_transaction())


def _notified_in_transaction(session: Session) -> bool:
    """Whether this transaction already sent the wake-up NOTIFY (a locate queues several jobs)."""
    sent = session.info.get("notified_in")
    transaction = session.get_transaction()
    return sent is not None and transaction is not None and sent() is transaction


class Waker(Protocol):
    """Something the worker can sleep on until new work may be there."""

    def wait(self, timeout: float) -> None: ...

    def notify(self) -> None: ...

    def close(self) -> None: ...


class LocalWaker:
    """Wakes a worker in the same process (demo mode, single-process server, tests)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def wait(self, timeout: float) -> None:
        self._event.wait(timeout)
        self._event.clear()

    def notify(self) -> None:
        self._event.set()

    def close(self) -> None:
        self._event.set()


class PostgresWaker(LocalWaker):
    """LISTENs on the jobs channel; web processes NOTIFY it when they commit a job."""

    def __init__(self, conninfo: str) -> None:
        super().__init__()
        self._conninfo = conninfo
        self._conn = psycopg.connect(conninfo, autocommit=True)
        self._conn.execute(f"LISTEN {CHANNEL}")
        self._lock = threading.Lock()

    def wait(self, timeout: float) -> None:
        # Wait in short slices so a local notify() (stop, in-process commit) is seen quickly;
        # a NOTIFY from PostgreSQL ends the wait at once.
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self._event.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                if self._conn.closed or self._conn.broken:
                    # Terminated while we were not reading from it: listen again (a NOTIFY
                    # sent meanwhile is lost, so look at the queue once more too).
                    self._reconnect()
                    break
                try:
                    if any(True for _ in self._conn.notifies(timeout=min(remaining, 0.25), stop_after=1)):
                        break
                except psycopg.Error:  # connection lost: sleep instead, reconnect afterwards
                    log.warning("lost the LISTEN connection; polling until it is back")
                    self._event.wait(min(remaining, 1.0))
                    self._reconnect()
                    break  # a NOTIFY sent while we were not listening is lost: look again
            self._event.clear()

    def _reconnect(self) -> None:
        try:
            self._conn.close()
            # The original conninfo: info.dsn would lack the password.
            self._conn = psycopg.connect(self._conninfo, autocommit=True)
            self._conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error:
            log.warning("could not re-establish LISTEN yet")

    def close(self) -> None:
        super().close()
        self._conn.close()


def wake_on_commit(db: Database, waker: Waker) -> None:
    """Notify the waker after any commit that enqueued jobs (in this process)."""

    def after_commit(session: Session) -> None:
        if session.info.pop("wake_workers", False):
            waker.notify()

    event.listen(db.sessions, "after_commit", after_commit)
