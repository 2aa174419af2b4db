"""Per-request database session, the landing page and the liveness probe."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from flask import Blueprint, Flask, g, redirect, render_template, request, url_for
from flask_babel import gettext
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as BaseResponse

from release.container import services

log = logging.getLogger(__name__)
bp = Blueprint("web", __name__)
SAFE_METHODS = frozenset({"GET", "HEAD"})


def db_session() -> Session:
    """The request's session, opened on first use and closed at teardown; GET and HEAD never
    change state, so theirs is the cheaper read-only kind."""
    if "db_session" not in g:
        db = services().db
        g.db_session = (db.read_sessions if request.method in SAFE_METHODS else db.sessions)()
    session: Session = g.db_session
    return session


def discard_session() -> None:
    """Close the request's session (if any): the next db_session() opens a new one."""
    _close_session(None)


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


def format_datetime(value: datetime | int | float | None) -> str:
    """Dates as people read them, always in UTC and saying so."""
    if value is None:
        return gettext("unknown")
    if not isinstance(value, datetime):
        value = datetime.fromtimestamp(value, tz=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def register(app: Flask) -> None:
    """Hook the per-request session and template helpers into the app."""
    app.teardown_appcontext(_close_session)
    app.add_template_filter(format_datetime, "datetime")


@bp.get("/")
def index() -> str | BaseResponse:
    """What this service is, for someone who lands on its front page (the demo: its guide)."""
    if services().settings.app.demo:
        return redirect(url_for("demo.index"))
    return render_template("index.html")


@bp.get("/healthz")
def healthz() -> tuple[str, int, dict[str, str]]:
    """Process is up (no dependencies checked)."""
    return "ok\n", 200, {"Content-Type": "text/plain"}
