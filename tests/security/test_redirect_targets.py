"""Where the console sends a signed-in admin next (``next`` after sign-in, ``back`` after an
action) is a path inside the console, and never one with control characters: CR/LF in
``next`` gave a 500. Refused targets fall back to the reports list."""

from __future__ import annotations

import pytest

from release.web.admin import auth
from tests.support.console import ADMIN, Console
from tests.support.stack import Stack, StackFactory
from tests.support.visitor import csrf_token

CONTROL = ["\r\n", "\n", "\r", "\x00", "\t", "\x1b", "\x85", "\u2028"]


@pytest.fixture
def console(make_stack: StackFactory) -> Console:
    stack: Stack = make_stack()
    with stack.services.db.session() as session:
        auth.create_admin(session, ADMIN[0], ADMIN[1], "admin", actor="test")
        session.commit()
    return Console(stack)


@pytest.mark.parametrize("control", CONTROL)
def test_the_redirect_check_refuses_control_characters(console: Console, control: str) -> None:
    with console.stack.app.test_request_context("/admin/login"):
        assert auth.safe_next(f"/admin/reports{control}Set-Cookie: x=1") == "/admin/reports"
        assert auth.safe_next(f"/admin/audit?page=2{control}") == "/admin/reports"
        assert auth.safe_next("/admin/audit?page=2") == "/admin/audit?page=2"


@pytest.mark.parametrize("encoded", ["%0d%0a", "%0a", "%00", "%e2%80%a8"])
def test_signing_in_with_control_characters_in_next_is_no_500(console: Console, encoded: str) -> None:
    client = console.stack.new_client()
    page = client.get("/admin/login")
    target = f"/admin/login?next=/admin/reports{encoded}Set-Cookie:%20x=1"
    response = client.post(target, data={"csrf_token": csrf_token(page.text), "username": ADMIN[0],
                                         "password": ADMIN[1]})  # fmt: skip
    assert response.status_code in (303, 400), response.status_code
    if response.status_code == 303:
        assert response.headers["Location"] == "/admin/reports"
    signed_in = console.login()
    again = signed_in.get(target)
    assert again.status_code in (302, 400) and "Set-Cookie" not in again.headers.get("Location", "")


@pytest.mark.parametrize("back", ["/admin/\r\nSet-Cookie: x=1", "/admin/\tx", "/admin/\u2028x", "//evil.example/admin/",
                                  "/admin\\x", "https://evil.example/admin/"])  # fmt: skip
def test_the_back_field_of_an_action_is_checked_as_next_is(console: Console, back: str) -> None:
    """A form body may carry line breaks (the edge lets them through for multi-line text)."""
    client = console.login()
    response = console.post(client, "/admin/jobs/1/retry", "/admin/reports", {"confirm": "y", "back": back})
    assert response.status_code == 303 and response.headers["Location"] == "/admin/reports"
