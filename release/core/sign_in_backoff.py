"""Per-account back-off for password sign-ins, in the database so that it holds across client
addresses and web processes (the per-IP limit in release/web/limits.py does neither).

Attempts are counted per user name, case-folded, whether or not the account exists (so the
answer does not tell). The first ``FREE_ATTEMPTS`` within ``WINDOW`` go ahead at once; from
then on each attempt earns a wait of 1, 2, 4, ... seconds (at most ``MAX_WAIT_SECONDS``)
before the next one is even checked. An attempt is counted *before* its password is checked,
under the row's lock, so parallel guesses cannot slip through together; a successful sign-in
deletes the row. Attempts refused while waiting are not counted and check no password.
"""

from __future__ import annotations

import hashlib
import math
import unicodedata
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from release.core import history
from release.db.models import SignInFailures

FREE_ATTEMPTS = 5
# Attempts are forgotten after this long without one; longer than the longest wait, so an
# attacker who waits out each back-off never gets free attempts again.
WINDOW = timedelta(hours=1)
MAX_WAIT_SECONDS = 15 * 60
NAME_LIMIT = 128  # the audit log's actor column


def _key(username: str) -> str:
    return hashlib.sha256(username.strip().casefold().encode()).hexdigest()


def wait_after(attempts: int) -> int:
    """Seconds the next attempt must wait once ``attempts`` were made (0: none)."""
    if attempts < FREE_ATTEMPTS:
        return 0
    return min(2 ** (attempts - FREE_ATTEMPTS), MAX_WAIT_SECONDS)


def claim(session: Session, username: str, now: datetime) -> int:
    """Count one attempt for ``username`` before its password is checked; commits (other
    processes see it at once). Returns 0 to go ahead, else the seconds still to wait (and
    counts nothing)."""
    key = _key(username)
    row = session.get(SignInFailures, key, with_for_update=True, populate_existing=True)
    if row is None:
        try:
            with session.begin_nested():
                row = SignInFailures(key=key, attempts=0, last_attempt_at=now)
                session.add(row)
        except IntegrityError:  # another process added it first: take theirs, locked
            row = session.get(SignInFailures, key, with_for_update=True, populate_existing=True)
            assert row is not None
    if row.locked_until is not None and row.locked_until > now:
        session.commit()
        return max(1, math.ceil((row.locked_until - now).total_seconds()))
    if row.last_attempt_at < now - WINDOW:
        row.attempts = 0
    row.attempts += 1
    row.last_attempt_at = now
    wait = wait_after(row.attempts)
    row.locked_until = now + timedelta(seconds=wait) if wait else None
    session.commit()
    return 0


def succeeded(session: Session, username: str) -> None:
    """Forget the attempts for ``username``, in the caller's transaction."""
    session.execute(delete(SignInFailures).where(SignInFailures.key == _key(username)))


def failed(session: Session, username: str, client_ip: str) -> None:
    """Audit a failed sign-in, in the caller's transaction: the name as typed (cleaned and
    bounded) and the client address; never the password."""
    name = printable(username)[:NAME_LIMIT] or "?"
    history.audit(session, name, "admin.login_failed", f"admin:{name}", f"from {client_ip[:64]}")


def printable(text: str) -> str:
    """``text`` without control, format (bidi) or unassigned characters, or surrogates."""
    return "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")


def purge(session: Session, now: datetime) -> int:
    """Delete counts nobody added to within ``WINDOW`` (forgotten anyway), in the caller's
    transaction; returns how many."""
    result = session.execute(
        delete(SignInFailures)
        .where(SignInFailures.last_attempt_at < now - WINDOW)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
