"""The reports list (search, paging, no N+1), the report page and the nodes page."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import event

from release.db.models import utcnow
from tests.support.console import VIEWER, Console, seed_report

ROW = re.compile(r'<a href="/admin/reports/(\d+)"')


def _ids(html: str) -> list[int]:
    return [int(x) for x in ROW.findall(html)]


def test_search_filters_and_paging(console: Console) -> None:
    db = console.stack.services.db
    with db.session() as session:
        for i in range(120):
            seed_report(session, created_at=utcnow() - timedelta(minutes=i), subject=f"Bulk {i}",
                        address=f"bulk{i}@example.com")  # fmt: skip
        special = seed_report(
            session, envelope_sender="Needle@Partner.example", subject="Invoice 100%_off", message_id="needle-msg-42",
            address="target@example.com", state="failed", created_at=utcnow() - timedelta(days=40),
        )  # fmt: skip
        other_node = seed_report(session, node="mx2", created_at=utcnow() - timedelta(days=3))
        session.commit()
        special_id, other_id = special.id, other_node.id
    client = console.login(VIEWER)

    first = client.get("/admin/reports")
    assert "122 reports" in first.text and len(_ids(first.text)) == 50
    third = client.get("/admin/reports?page=3")
    assert len(_ids(third.text)) == 22 and "Page 3 of 3" in third.text
    assert set(_ids(first.text)).isdisjoint(_ids(client.get("/admin/reports?page=2").text))

    def only(query: str) -> list[int]:
        return _ids(client.get(f"/admin/reports?{query}").text)

    assert only("sender=needle@partner") == [special_id]
    assert only("recipient=TARGET@") == [special_id]
    assert only("subject=100%25_") == [special_id]  # LIKE wildcards are matched literally
    assert only("subject=100%25x") == []
    assert only("message_id=needle-msg") == [special_id]
    assert only("status=failed") == [special_id]
    assert only("node=mx2") == [other_id]
    day = (utcnow() - timedelta(days=40)).date().isoformat()
    assert only(f"date_from={day}&date_to={day}") == [special_id]
    bad = client.get("/admin/reports?date_from=yesterday")
    assert bad.status_code == 200 and "is not a date" in bad.text


def test_list_runs_a_fixed_number_of_queries(console: Console) -> None:
    db = console.stack.services.db
    with db.session() as session:
        for _ in range(30):
            seed_report(session)
        session.commit()
    client = console.login()
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if "FROM reports" in statement or "FROM recipients" in statement:
            statements.append(statement)

    for engine in db.engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        assert client.get("/admin/reports").status_code == 200
    finally:
        for engine in db.engines:
            event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 3, statements  # count, page, recipients (selectin)


def test_report_page_shows_copies_history_and_jobs(console: Console) -> None:
    report = console.reported(["hal@example.com"], subject="<b>Escaped</b>")
    client = console.login()
    page = client.get(f"/admin/reports/{report.id}")
    assert page.status_code == 200
    text = page.text
    assert "hal@example.com" in text and "&lt;b&gt;Escaped&lt;/b&gt;" in text
    for action in ("reported", "retention extended", "notified"):
        assert action in text
    assert "locate #" in text and "notify #" in text
    assert client.get("/admin/reports/999999").status_code == 404


def test_nodes_page_checks_each_node_live(console: Console) -> None:
    client = console.login(VIEWER)
    page = client.get("/admin/nodes")
    assert page.status_code == 200
    assert 'id="node-mx1"' in page.text and "mailquarantine:1" in page.text and "mailquarantine:2" in page.text
    assert 'data-field="reachable">yes' in page.text and 'data-field="auth">ok' in page.text
    console.stack.simulator.stop()
    down = client.get("/admin/nodes")
    assert 'data-field="reachable">no' in down.text
