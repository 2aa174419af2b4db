"""The stats dashboard: numbers checked against a seeded history (SQLite and PostgreSQL),
the page, its access rules and the server-drawn SVG charts."""

from __future__ import annotations

import re
import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy.orm import Session

from release.core import links, stats
from release.db.models import Event, Recipient, Report
from release.db.models import utcnow as now_utc
from release.web.admin import charts
from tests.support.console import VIEWER, Console

SVG_NS = "{http://www.w3.org/2000/svg}"


def at(today: date, days_ago: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    """A time on the day ``days_ago`` days before ``today`` (UTC)."""
    return datetime.combine(today - timedelta(days=days_ago), time(hour, minute, second), tzinfo=UTC)


@dataclass
class Spec:
    """A report: created (days ago, hour), its sender, its copies and when each was released."""

    created: tuple[int, int]
    sender: str | None
    addresses: list[str]
    released: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # copy index -> (days ago, h, min)


REPORTS = [
    Spec((0, 1), "anna@Alpha.example", ["x@example.com", "y@example.com"], {0: (0, 3, 0)}),  # 2 h
    Spec((0, 2), "bob@alpha.example", ["X@Example.com"]),
    Spec((1, 5), "carl@beta.example", ["y@example.com"]),
    Spec((3, 5), "", ["z@example.com"]),  # the null sender
    Spec((4, 5), None, []),  # never located
    Spec((10, 0), "dora@beta.example", ["r10a@example.com", "r10b@example.com"], {0: (10, 0, 30), 1: (10, 5, 0)}),
    # Reported the day before the 30-day window; released (after 1 h) on its first day, at midnight.
    Spec((30, 23), "eve@gamma.example", ["old@example.com"], {0: (29, 0, 0)}),
    Spec((31, 0), "fred@gamma.example", ["old@example.com"], {0: (30, 4, 0)}),  # all outside
    *[Spec((20, 0), f"s@d{i:02}.example", [f"zz{i}@example.com"]) for i in range(1, 10)],
]

# (days ago, hour, minute, second, action, detail): what the dashboard must count, and what it must not.
EVENTS = [
    *[(d, h, 0, 0, "reported", "") for d, h in [(0, 1), (0, 2), (1, 5), (3, 5), (4, 5), (10, 0), (30, 23), (31, 0)]],
    *[(20, 0, 0, 0, "reported", "") for _ in range(9)],
    (4, 6, 0, 0, "not_found", ""),
    (0, 2, 0, 0, "notified", ""),
    (0, 2, 0, 0, "notified", ""),
    (1, 6, 0, 0, "notified", ""),
    (10, 0, 5, 0, "notified", ""),
    (10, 0, 5, 0, "notified", ""),
    (30, 23, 59, 59, "notified", ""),  # one second before the window
    (0, 3, 0, 0, "released", ""),
    (10, 0, 30, 0, "released", ""),
    (10, 5, 0, 0, "released", ""),
    (29, 0, 0, 0, "released", ""),  # the window's first instant
    (30, 4, 0, 0, "released", ""),
    (3, 7, 0, 0, "expired", ""),
    (5, 1, 0, 0, "deleted", "retention: deleted from the gateway"),
    (5, 2, 0, 0, "deleted", "admin request: deleted from the gateway"),  # deliberate, not expiry
    (40, 0, 0, 0, "expired", ""),
    (1, 8, 0, 0, "failed", ""),
    (20, 1, 0, 0, "notify_failed", ""),
    (35, 0, 0, 0, "failed", ""),
    (0, 2, 0, 0, "retention_extended", ""),
    (0, 2, 0, 0, "release_requested", ""),
    (5, 0, 0, 0, "delete_requested", ""),
]

# Per series: {days ago: count} inside the 30-day window.
EXPECTED_30 = {
    "reports": {0: 2, 1: 1, 3: 1, 4: 1, 10: 1, 20: 9},
    "not_found": {4: 1},
    "notified": {0: 2, 1: 1, 10: 2},
    "released": {0: 1, 10: 2, 29: 1},
    "expired": {3: 1, 5: 1},
    "failed": {1: 1, 20: 1},
}
TOP_SENDERS_30 = [("alpha.example", 2), ("beta.example", 2), ("(null sender)", 1)] + [
    (f"d{i:02}.example", 1) for i in range(1, 8)
]
TOP_RECIPIENTS_30 = [("x@example.com", 2), ("y@example.com", 2), ("r10a@example.com", 1), ("r10b@example.com", 1),
                     ("z@example.com", 1)] + [(f"zz{i}@example.com", 1) for i in range(1, 6)]  # fmt: skip
TOP_SENDERS_7 = [("alpha.example", 2), ("(null sender)", 1), ("beta.example", 1)]
TOP_RECIPIENTS_7 = [("x@example.com", 2), ("y@example.com", 2), ("z@example.com", 1)]


def expected_counts(days: int) -> dict[str, list[int]]:
    """The expected series, oldest day first, for a window of ``days`` days."""
    return {key: [per_day.get(days - 1 - i, 0) for i in range(days)] for key, per_day in EXPECTED_30.items()}


def seed(session: Session, today: date) -> None:
    """Write the history above directly (reports, copies, events), relative to ``today``."""
    for spec in REPORTS:
        created = at(today, *spec.created)
        report = Report(node="mx1", message_id=secrets.token_hex(8), link_issued_at=created, state="notified",
                        comment="", sender_ip="192.0.2.1", envelope_sender=spec.sender, created_at=created)  # fmt: skip
        for queue, address in enumerate(spec.addresses, start=1):
            nonce = links.new_token_nonce()
            released = spec.released.get(queue - 1)
            report.recipients.append(
                Recipient(
                    queue=queue,
                    address=address,
                    token_nonce=nonce,
                    token_hash=links.token_hash(nonce),
                    state="released" if released else "notified",
                    expires_at=created + timedelta(days=7),
                    released_at=at(today, *released) if released else None,
                    created_at=created,
                )
            )
        session.add(report)
    for days_ago, hour, minute, second, action, detail in EVENTS:
        session.add(Event(at=at(today, days_ago, hour, minute, second), actor="system", action=action, detail=detail))
    session.commit()


@pytest.fixture
def today(console: Console) -> date:
    """Seed the history around today (UTC) and return today."""
    day = now_utc().date()
    with console.stack.services.db.session() as session:
        seed(session, day)
    return day


def test_dashboard_numbers_match_the_seeded_history(console: Console, today: date) -> None:
    noon = datetime.combine(today, time(12), tzinfo=UTC)
    with console.stack.services.db.session() as session:
        month = stats.dashboard(session, stats.window(30, noon))
        week = stats.dashboard(session, stats.window(7, noon))

    assert month.window.start == at(today, 29) and month.window.end == at(today, -1)
    assert month.window.dates[0] == today - timedelta(days=29) and month.window.dates[-1] == today
    assert {s.key: list(s.counts) for s in month.series} == expected_counts(30)
    assert {s.key: s.total for s in month.series} == {
        "reports": 15, "not_found": 1, "notified": 5, "released": 4, "expired": 2, "failed": 2,
    }  # fmt: skip
    # Released after 2 h, 30 min, 5 h and 1 h: the median is 1 h 30 min.
    assert month.release_delay == stats.ReleaseDelay(timedelta(minutes=90), 4)
    assert [(r.name, r.count) for r in month.top_sender_domains] == TOP_SENDERS_30
    assert [(r.name, r.count) for r in month.top_recipients] == TOP_RECIPIENTS_30

    assert {s.key: list(s.counts) for s in week.series} == expected_counts(7)
    assert week.release_delay == stats.ReleaseDelay(timedelta(hours=2), 1)
    assert [(r.name, r.count) for r in week.top_sender_domains] == TOP_SENDERS_7
    assert [(r.name, r.count) for r in week.top_recipients] == TOP_RECIPIENTS_7


def test_an_empty_history_gives_zeros(console: Console) -> None:
    with console.stack.services.db.session() as session:
        dash = stats.dashboard(session, stats.window(90))
    assert len(dash.series) == 6 and all(s.counts == (0,) * 90 for s in dash.series)
    assert dash.release_delay == stats.ReleaseDelay(None, 0)
    assert dash.top_sender_domains == () and dash.top_recipients == ()


def _svgs(html: str) -> dict[str, ET.Element]:
    """Every chart of the page, parsed, by series key."""
    result = {}
    for source in re.findall(r"<svg\b.*?</svg>", html, flags=re.DOTALL):
        svg = ET.fromstring(source)  # noqa: S314 - our own page
        key = next(c for c in svg.get("class", "").split() if c.startswith("chart-"))[len("chart-") :]
        result[key] = svg
    return result


def _tables(html: str) -> dict[str, list[tuple[str, int]]]:
    """The per-day tables under the charts: series key -> [(day, count)]."""
    result = {}
    for key, body in re.findall(r'<table class="table table-sm mb-0" data-series="(\w+)">(.*?)</table>', html,
                                flags=re.DOTALL):  # fmt: skip
        rows = re.findall(r'<th scope="row" class="fw-normal">([\d-]+)</th><td class="text-end">(\d+)</td>', body)
        result[key] = [(day, int(n)) for day, n in rows]
    return result


def _top(html: str, table_id: str) -> list[tuple[str, int]]:
    body = re.search(rf'<table class="table table-sm mb-0" id="{table_id}">(.*?)</table>', html, flags=re.DOTALL)
    assert body is not None
    rows = re.findall(r'<td class="inert">([^<]+)</td><td class="text-end">(\d+)</td>', body.group(1))
    return [(name, int(n)) for name, n in rows]


@pytest.mark.parametrize("days", [30, 7])
def test_page_shows_the_numbers_charts_and_tables(console: Console, today: date, days: int) -> None:
    client = console.login(VIEWER)
    page = client.get("/admin/stats" if days == 30 else f"/admin/stats?days={days}")
    assert page.status_code == 200
    html = page.text
    assert 'href="/admin/stats"' in html or 'href="/admin/stats?days=30"' in html  # in the admin nav
    assert f'aria-current="page">{days} days' in html
    assert "<script" not in html.split("</nav>", 1)[1] and " style=" not in html
    dates = [(today - timedelta(days=days - 1 - i)).isoformat() for i in range(days)]
    expected = expected_counts(days)

    tables = _tables(html)
    assert {key: [n for _d, n in rows] for key, rows in tables.items()} == expected
    assert all([d for d, _n in rows] == dates for rows in tables.values())
    for key, values in expected.items():
        assert f'data-total="{key}">{sum(values)}<' in html

    svgs = _svgs(html)
    assert set(svgs) == set(expected)
    for key, values in expected.items():
        svg = svgs[key]
        assert svg.get("role") == "img" and svg.get("aria-label")
        title = svg.find(f"{SVG_NS}title")
        assert title is not None and title.text == svg.get("aria-label")
        assert f"{sum(values)} in total" in (title.text or "")
        bars = svg.findall(f"{SVG_NS}rect")
        assert len(bars) == days  # one bar per day, zero days too
        assert [b.get("data-label") for b in bars] == dates
        assert [int(b.get("data-value", "-1")) for b in bars] == values
        heights = [float(b.get("height", "nan")) for b in bars]
        peak = max(values)
        tallest = max(heights)
        assert tallest == pytest.approx(charts.PLOT_HEIGHT)
        for height, value in zip(heights, values, strict=True):
            assert height == pytest.approx(tallest * value / peak, abs=0.01)
        xs = [float(b.get("x", "nan")) for b in bars]
        assert xs == sorted(xs) and len(set(xs)) == days  # left to right, oldest first

    if days == 30:
        assert 'id="median-release" data-seconds="5400">1 h 30 min<' in html and 'id="median-count">4<' in html
        assert _top(html, "top-senders") == TOP_SENDERS_30
        assert _top(html, "top-recipients") == TOP_RECIPIENTS_30
    else:
        assert 'id="median-release" data-seconds="7200">2 h 0 min<' in html and 'id="median-count">1<' in html
        assert _top(html, "top-senders") == TOP_SENDERS_7
        assert _top(html, "top-recipients") == TOP_RECIPIENTS_7


def test_unknown_window_falls_back_to_30_days(console: Console) -> None:
    client = console.login(VIEWER)
    for query in ("?days=12", "?days=abc", "?days="):
        page = client.get(f"/admin/stats{query}")
        assert page.status_code == 200 and 'aria-current="page">30 days' in page.text
        assert len(_svgs(page.text)["reports"].findall(f"{SVG_NS}rect")) == 30


def test_admins_see_it_and_anonymous_visitors_sign_in_first(console: Console) -> None:
    anonymous = console.stack.new_client()
    response = anonymous.get("/admin/stats?days=7")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login?next=/admin/stats")
    assert console.login().get("/admin/stats").status_code == 200


def test_bar_chart_scales_and_escapes() -> None:
    svg = ET.fromstring(str(charts.bar_chart("A <b> & c", ["d1", "d2", "d3", "d4"], [0, 5, 10, 2], key="x")))  # noqa: S314
    heights = [float(r.get("height", "nan")) for r in svg.findall(f"{SVG_NS}rect")]
    assert heights == pytest.approx([0, charts.PLOT_HEIGHT / 2, charts.PLOT_HEIGHT, charts.PLOT_HEIGHT / 5])
    title = svg.find(f"{SVG_NS}title")
    assert title is not None and title.text == "A <b> & c: 17 in total from d1 to d4, at most 10 on one day"
    flat = ET.fromstring(str(charts.bar_chart("None", ["a", "b"], [0, 0])))  # noqa: S314
    assert [r.get("height") for r in flat.findall(f"{SVG_NS}rect")] == ["0", "0"]
    with pytest.raises(ValueError):
        charts.bar_chart("Bad", ["a"], [1, 2])


def test_small_helpers() -> None:
    assert stats.parse_days("7") == 7 and stats.parse_days("90") == 90
    assert stats.parse_days(None) == stats.parse_days("x") == stats.parse_days("31") == 30
    assert stats.format_duration(None) == "–"
    assert stats.format_duration(timedelta(seconds=42)) == "42 s"
    assert stats.format_duration(timedelta(minutes=4, seconds=10)) == "4 min 10 s"
    assert stats.format_duration(timedelta(days=3, hours=4, minutes=59)) == "3 d 4 h"
    assert stats.sender_domain("Someone@Example.ORG") == "example.org"
    assert stats.sender_domain("<>") == stats.sender_domain("") == "(null sender)"
    assert stats.sender_domain("postmaster") == "(no domain)"
    win = stats.window(7, datetime(2024, 3, 1, 23, 59, tzinfo=UTC))
    assert win.start == datetime(2024, 2, 24, tzinfo=UTC) and win.end == datetime(2024, 3, 2, tzinfo=UTC)
    assert win.dates[0] == date(2024, 2, 24) and win.dates[-1] == date(2024, 3, 1) and len(win.dates) == 7
