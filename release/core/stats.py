"""Numbers for the admin dashboard: what happened per day over a window of whole UTC days.

Every function here is pure with respect to the web layer: it takes a session and a
:class:`Window` and returns dataclasses. Days are UTC calendar days; a window of N days
covers today (UTC) and the N - 1 days before it, from midnight at its start up to (not
including) midnight at the start of tomorrow.

The daily series are read from the append-only ``events`` table (``action`` and ``at``),
because it keeps one row per thing that happened, with its time, even after the row it is
about changed state again:

``reports``
    Reports accepted from senders: events ``reported`` (one per report, written when
    the sender's report is stored).
``not_found``
    Reports for which the gateway held no copy: events ``not_found`` (one per report).
``notified``
    Notifications delivered to a recipient: events ``notified`` (one per copy and
    delivery; a notification an admin had sent again counts again).
``released``
    Copies released to their recipient: events ``released`` (one per copy).
``expired``
    Copies that ran out of time unreleased: events ``expired`` (the gateway's own
    retention had removed the copy, or its link was used after it expired) plus events
    ``deleted`` written by retention enforcement (detail starting with ``retention:``).
    Copies an admin deleted on purpose (detail ``admin request: ...``) are not counted.
``failed``
    Work that gave up: events ``failed`` (a report that could not be located, or a
    copy's notification or release job that ran out of attempts) plus ``notify_failed``
    (the mail server refused a notification for good).

The other figures come from the rows themselves: the median time to release uses
``Report.created_at`` and ``Recipient.released_at`` of copies released in the window; the
top lists count reports (sender domains) and copies (recipients) of reports created in the
window.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from release.db.models import Event, Recipient, Report, utcnow

WINDOWS = (7, 30, 90)
DEFAULT_WINDOW = 30
TOP = 10
RETENTION_DELETION = "retention:"  # how enforcement starts the detail of its "deleted" events


@dataclass(frozen=True)
class SeriesDefinition:
    key: str
    label: str
    help: str
    condition: ColumnElement[bool]


SERIES = (
    SeriesDefinition("reports", "Reports", "Reports accepted from senders.", Event.action == "reported"),
    SeriesDefinition(
        "not_found", "Not found", "Reports for which the gateway held no copy.", Event.action == "not_found"
    ),
    SeriesDefinition(
        "notified", "Notified", "Notifications delivered to recipients (per copy).", Event.action == "notified"
    ),
    SeriesDefinition("released", "Released", "Copies released to their recipient.", Event.action == "released"),
    SeriesDefinition(
        "expired",
        "Expired",
        "Copies that ran out of time unreleased (gone from the gateway, or deleted by retention).",
        or_(Event.action == "expired", and_(Event.action == "deleted", Event.detail.startswith(RETENTION_DELETION))),
    ),
    SeriesDefinition(
        "failed",
        "Failed",
        "Reports that could not be located and copies whose mail or release gave up.",
        Event.action.in_(("failed", "notify_failed")),
    ),
)


@dataclass(frozen=True)
class Window:
    """Whole UTC days: ``start`` (midnight, inclusive) to ``end`` (midnight after the last day)."""

    days: int
    start: datetime
    end: datetime

    @property
    def dates(self) -> tuple[date, ...]:
        first = self.start.date()
        return tuple(first + timedelta(days=i) for i in range(self.days))


@dataclass(frozen=True)
class Series:
    """One count per day of the window, oldest first."""

    key: str
    label: str
    help: str
    counts: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True)
class Ranked:
    name: str
    count: int


@dataclass(frozen=True)
class ReleaseDelay:
    """The median time from a report to the release of its copies, over ``count`` releases."""

    median: timedelta | None
    count: int


@dataclass(frozen=True)
class Dashboard:
    window: Window
    series: tuple[Series, ...]
    release_delay: ReleaseDelay
    top_sender_domains: tuple[Ranked, ...]
    top_recipients: tuple[Ranked, ...]


def window(days: int = DEFAULT_WINDOW, now: datetime | None = None) -> Window:
    """The last ``days`` whole UTC days up to and including today; an unknown size gives the default."""
    if days not in WINDOWS:
        days = DEFAULT_WINDOW
    today = (now or utcnow()).astimezone(UTC).date()
    end = datetime.combine(today + timedelta(days=1), time(), tzinfo=UTC)
    return Window(days=days, start=end - timedelta(days=days), end=end)


def _in(column: InstrumentedAttribute[Any], win: Window) -> ColumnElement[bool]:
    return and_(column >= win.start, column < win.end)


def daily_counts(session: Session, win: Window) -> tuple[Series, ...]:
    """Each series of :data:`SERIES`, counted per UTC day (one query per series, grouped by
    day in the database: SQLite's ``date()``, PostgreSQL's date of the UTC time)."""
    dialect = session.get_bind().dialect.name
    index = {day: i for i, day in enumerate(win.dates)}
    result = []
    for definition in SERIES:
        counts = [0] * win.days
        where = and_(definition.condition, _in(Event.at, win))
        if dialect in ("sqlite", "postgresql"):
            day = (
                func.date(Event.at)
                if dialect == "sqlite"
                else func.to_char(func.timezone("UTC", Event.at), "YYYY-MM-DD")
            )
            for value, count in session.execute(select(day, func.count()).where(where).group_by(day)):
                counts[index[date.fromisoformat(str(value)[:10])]] += count
        else:  # pragma: no cover - any other database: group the times here
            for at in session.scalars(select(Event.at).where(where)):
                counts[index[at.date()]] += 1
        result.append(Series(definition.key, definition.label, definition.help, tuple(counts)))
    return tuple(result)


def release_delay(session: Session, win: Window) -> ReleaseDelay:
    """Median of ``released_at - report.created_at`` over the copies released in the window."""
    rows = session.execute(
        select(Report.created_at, Recipient.released_at)
        .join(Recipient, Recipient.report_id == Report.id)
        .where(Recipient.released_at.is_not(None), _in(Recipient.released_at, win))
    )
    durations = [released - created for created, released in rows if released is not None]
    if not durations:
        return ReleaseDelay(None, 0)
    seconds = statistics.median(d.total_seconds() for d in durations)
    return ReleaseDelay(timedelta(seconds=seconds), len(durations))


def sender_domain(envelope_sender: str) -> str:
    """The lower-cased domain of an envelope sender; the null sender has none."""
    address = envelope_sender.strip().strip("<>")
    if "@" not in address:
        return "(null sender)" if not address else "(no domain)"
    return address.rsplit("@", 1)[1].lower()


def _top(counter: Counter[str]) -> tuple[Ranked, ...]:
    ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    return tuple(Ranked(name, count) for name, count in ranked[:TOP])


def top_sender_domains(session: Session, win: Window) -> tuple[Ranked, ...]:
    """The ten domains that sent the most reported messages (reports created in the window;
    reports not yet located have no sender and are left out). Ties go alphabetically."""
    rows = session.execute(
        select(Report.envelope_sender, func.count())
        .where(Report.envelope_sender.is_not(None), _in(Report.created_at, win))
        .group_by(Report.envelope_sender)
    )
    counter: Counter[str] = Counter()
    for sender, count in rows:
        counter[sender_domain(sender or "")] += count
    return _top(counter)


def top_recipients(session: Session, win: Window) -> tuple[Ranked, ...]:
    """The ten addresses (lower-cased) with the most reported copies, of reports created in
    the window. Ties go alphabetically."""
    address = func.lower(Recipient.address)
    count = func.count()
    rows = session.execute(
        select(address, count)
        .join(Report, Report.id == Recipient.report_id)
        .where(_in(Report.created_at, win))
        .group_by(address)
        .order_by(count.desc(), address)
        .limit(TOP)
    )
    return tuple(Ranked(name, n) for name, n in rows)


def dashboard(session: Session, win: Window) -> Dashboard:
    """Everything the stats page shows, for one window."""
    return Dashboard(
        window=win,
        series=daily_counts(session, win),
        release_delay=release_delay(session, win),
        top_sender_domains=top_sender_domains(session, win),
        top_recipients=top_recipients(session, win),
    )


def format_duration(value: timedelta | None) -> str:
    """A duration as people read it: "3 d 4 h", "2 h 5 min", "4 min 10 s"."""
    if value is None:
        return "–"
    seconds = int(round(value.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def parse_days(value: str | None, choices: Sequence[int] = WINDOWS) -> int:
    """The window size asked for in the query string, or the default."""
    try:
        days = int(value or "")
    except ValueError:
        return DEFAULT_WINDOW
    return days if days in choices else DEFAULT_WINDOW
