"""The request's database session: opened on first use, closed at teardown."""

from __future__ import annotations

import logging

from flask import Flask, g, request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from release.container import services

log = logging.getLogger(__name__)
SAFE_METHODS = frozenset({"GET", "HEAD"})


def db_session() -> Session:
    """The request's session, opened on first use and closed at teardown; GET and HEAD never
    change state, so theirs is the cheaper read-only kind."""
    if "db_session" not in g:
        db = services().db
        g.db_session = (db.read_sessions if request.method in SAFE_METHODS else db.sessions)()
    session: Session = g.db_session
    return session


def _close_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is None:
        return
    try:
        session.close()
    except SQLAlchemyError as exc:
        # The connection died under us (database restart): the response is already decided
        # (a 503 page if the request noticed); just drop the broken connection.
        log.warning("discarding a broken database connection: %s", type(exc).__name__)
        session.invalidate()


def register(app: Flask) -> None:
    """Close the request's session when its app context ends."""
    app.teardown_appcontext(_close_session)
