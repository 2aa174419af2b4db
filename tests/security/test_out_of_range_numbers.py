"""Ids and page numbers out of range are a 404 or the nearest page, never a 500: ids in
URLs are bounded by the ``id`` converter to what the schema stores (1 .. 2**31 - 1), and
page numbers are clamped. On SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from werkzeug.routing import Map, Rule

from release.web.converters import MAX_ID, IdConverter
from tests.support.console import ADMIN, Console, seed_report
from tests.support.stack import Stack, StackFactory

OUT_OF_RANGE = [str(2**31), str(2**63), str(10**30), "0", "-1", "00000000001"]
API_KEY = "api-key-0123456789abcdefghij"


@pytest.fixture
def stack_with_admin(make_stack: StackFactory) -> Stack:
    stack = make_stack(api={"keys": [API_KEY]})
    from release.web.admin import auth

    with stack.services.db.session() as session:
        auth.create_admin(session, ADMIN[0], ADMIN[1], "admin", actor="test")
        seed_report(session)
        session.commit()
    return stack


@pytest.mark.parametrize("number", OUT_OF_RANGE)
def test_out_of_range_ids_are_not_found(stack_with_admin: Stack, number: str) -> None:
    stack = stack_with_admin
    console = Console(stack)
    client = console.login()
    assert client.get(f"/admin/reports/{number}").status_code == 404
    for path in (f"/admin/recipients/{number}/release", f"/admin/jobs/{number}/retry",
                 f"/admin/approvals/{number}/approve"):  # fmt: skip
        response = console.post(client, path, "/admin/reports", {"confirm": "y", "reason": "fine"})
        assert response.status_code == 404, (path, response.status_code)
    api = stack.new_client().post(
        f"/api/v1/recipients/{number}/release", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert api.status_code == 404 and api.is_json


@pytest.mark.parametrize("page", [str(10**30), str(-(10**30)), "0", "-1", "x", "1e9", str(2**63), "%C2%B2", "%D9%A1"])
def test_page_numbers_are_clamped(stack_with_admin: Stack, page: str) -> None:
    client = Console(stack_with_admin).login()
    for path in ("/admin/audit", "/admin/reports"):
        response = client.get(f"{path}?page={page}")
        assert response.status_code == 200, (path, page)
        assert "Page" not in response.text or "Page 1 of 1" in response.text
    api = stack_with_admin.new_client().get(
        f"/api/v1/reports?page={page}", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert api.status_code in (200, 400) and api.is_json


def test_the_id_converter_matches_the_schema_range() -> None:
    urls = Map([Rule("/r/<id:item>", endpoint="r")], converters={"id": IdConverter}).bind("example.test")
    assert urls.match("/r/1") == ("r", {"item": 1})
    assert urls.match(f"/r/{MAX_ID}") == ("r", {"item": MAX_ID})
    for bad in ("0", str(MAX_ID + 1), "-1", "01", "x", "1.0"):
        with pytest.raises(Exception, match="404"):
            urls.match(f"/r/{bad}")
