"""Sign-in attempts are rate-limited per client address."""

from __future__ import annotations

from tests.support.stack import Stack


def test_too_many_sign_in_attempts_get_429(stack: Stack) -> None:
    limit = stack.services.settings.limits.logins_per_ip_per_minute
    codes = []
    for i in range(limit + 1):  # a new user name each time: the per-name back-off stays out of it
        page = stack.client.get("/admin/login")
        token = page.text.split('name="csrf_token" type="hidden" value="', 1)[1].split('"', 1)[0]
        codes.append(
            stack.client.post(
                "/admin/login", data={"csrf_token": token, "username": f"x{i}", "password": "wrong"}
            ).status_code
        )
    assert codes[:limit] == [401] * limit
    assert codes[limit] == 429
