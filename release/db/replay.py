"""Used CAPTCHA solutions in the database: a row per solution, its key UNIQUE, so of all the
processes sharing the database only the first to record a solution may use it."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from release.db.engine import Database
from release.db.models import UsedSolution


class DatabaseReplayGuard:
    """A :class:`release.captcha.replay.ReplayGuard` over the ``used_captcha_solutions`` table.

    Each check is its own short transaction, committed at once: a solution is used up when it
    is checked, whatever the request does next. A caller on SQLite must not hold the write
    lock meanwhile (one writer at a time; this would wait for it). A database error is not
    caught: the page answers 503 as for any database outage.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def __call__(self, key: str, expires: float) -> bool:
        """Record ``key`` until ``expires``; True if it was already recorded (a replay)."""
        row = {"key": hashlib.sha256(key.encode()).hexdigest(), "expires_at": datetime.fromtimestamp(expires, UTC)}
        with self._db.session() as session:
            try:
                session.execute(insert(UsedSolution).values(row))
                session.commit()
            except IntegrityError:
                session.rollback()
                return True
        return False


def purge_used_solutions(session: Session, now: datetime) -> int:
    """Forget solutions past their expiry (refused as expired anyway), in the caller's
    transaction; returns how many."""
    result = session.execute(
        delete(UsedSolution).where(UsedSolution.expires_at < now).execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
