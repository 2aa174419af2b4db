"""The front page, the liveness probe, and the date format every page uses."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, redirect, render_template, url_for
from flask_babel import gettext
from werkzeug.wrappers import Response as BaseResponse

from release.container import services

# Named "web", as before it had a module of its own: its endpoints stay "web.index" and "web.healthz".
bp = Blueprint("web", __name__)


@bp.app_template_filter("datetime")
def format_datetime(value: datetime | int | float | None) -> str:
    """Dates as people read them, always in UTC and saying so."""
    if value is None:
        return gettext("unknown")
    if not isinstance(value, datetime):
        value = datetime.fromtimestamp(value, tz=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


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
