"""Signing in and out, sessions, roles and CSRF on the admin console."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from release.db.models import AdminUser, AuditEntry
from tests.support.console import ADMIN, VIEWER, Console
from tests.support.visitor import csrf_token


def test_login_good_and_bad(console: Console) -> None:
    client = console.stack.new_client()
    anonymous = client.get("/admin/reports")
    assert anonymous.status_code == 302 and "/admin/login" in anonymous.headers["Location"]
    page = client.get("/admin/login")
    bad = client.post(
        "/admin/login", data={"csrf_token": csrf_token(page.text), "username": ADMIN[0], "password": "nope"}
    )
    assert bad.status_code == 401 and "Unknown user name or wrong password" in bad.text
    unknown = client.post(
        "/admin/login", data={"csrf_token": csrf_token(page.text), "username": "ghost", "password": ADMIN[1]}
    )
    assert unknown.status_code == 401
    assert client.get("/admin/reports").status_code == 302
    console.login(ADMIN, client)
    reports = client.get("/admin/reports")
    assert reports.status_code == 200 and ADMIN[0] in reports.text
    assert reports.headers["Cache-Control"] == "no-store"
    with console.stack.services.db.session() as session:
        user = session.scalar(select(AdminUser).where(AdminUser.username == ADMIN[0]))
        assert user is not None and user.last_login_at is not None
        assert user.password_hash.startswith("scrypt:")
        assert session.scalar(select(AuditEntry).where(AuditEntry.action == "admin.login")) is not None


def test_login_redirects_only_inside_the_console(console: Console) -> None:
    client = console.stack.new_client()
    page = client.get("/admin/login?next=//evil.example/x")
    response = client.post(
        "/admin/login?next=//evil.example/x",
        data={"csrf_token": csrf_token(page.text), "username": ADMIN[0], "password": ADMIN[1]},
    )
    assert response.headers["Location"] == "/admin/reports"


def test_logout_is_post_only_and_ends_the_session(console: Console) -> None:
    client = console.login()
    assert client.get("/admin/logout").status_code == 405
    assert client.post("/admin/logout").status_code == 400  # no CSRF token
    out = console.post(client, "/admin/logout", "/admin/reports")
    assert out.status_code == 303
    assert client.get("/admin/reports").status_code == 302


def test_signing_in_elsewhere_ends_the_older_session(console: Console) -> None:
    first = console.login()
    console.login()
    assert first.get("/admin/reports").status_code == 302


def test_session_expires_after_session_hours(console: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    client = console.login()
    assert client.get("/admin/reports").status_code == 200
    hours = console.stack.services.settings.admin.session_hours
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + hours * 3600 + 5)
    assert client.get("/admin/reports").status_code == 302


def test_viewer_reads_but_cannot_change(console: Console) -> None:
    report = console.reported(["vera@example.com"])
    client = console.login(VIEWER)
    assert client.get("/admin/settings").status_code == 200
    assert client.get(f"/admin/reports/{report.id}").status_code == 200
    assert "Delete copy" not in client.get(f"/admin/reports/{report.id}").text
    data = {"short_hours": "12", "long_days": "7", "record_days": "90"}
    assert console.post(client, "/admin/settings", "/admin/settings", data).status_code == 403
    rid = report.recipients[0].id
    for action in ("release", "resend", "delete"):
        response = console.post(client, f"/admin/recipients/{rid}/{action}", "/admin/reports", {"confirm": "y"})
        assert response.status_code == 403, action
    assert console.post(client, "/admin/jobs/1/retry", "/admin/reports", {"confirm": "y"}).status_code == 403
    assert console.recipient(rid).state == "notified"


def test_every_admin_post_needs_a_csrf_token(console: Console) -> None:
    client = console.login()
    for path in (
        "/admin/settings",
        "/admin/recipients/1/release",
        "/admin/recipients/1/resend",
        "/admin/recipients/1/delete",
        "/admin/jobs/1/retry",
        "/admin/logout",
        "/admin/login",
    ):
        response = client.post(path, data={"confirm": "y", "short_hours": "1", "long_days": "2", "record_days": "3"})
        assert response.status_code == 400, path


def test_trusted_proxy_header_only_from_configured_addresses(console: Console) -> None:
    from dataclasses import replace

    svc = console.stack.services
    svc.settings = replace(
        svc.settings, admin=replace(svc.settings.admin, trusted_user_header="X-Remote-User",
                                    trusted_proxy_addresses=("10.0.0.5",))
    )  # fmt: skip
    client = console.stack.new_client()
    headers = {"X-Remote-User": ADMIN[0]}
    assert client.get("/admin/reports", headers=headers).status_code == 302  # from 127.0.0.1: ignored
    proxy = {"REMOTE_ADDR": "10.0.0.5"}
    assert client.get("/admin/reports", headers=headers, environ_base=proxy).status_code == 200
    unknown = {"X-Remote-User": "nobody"}
    assert client.get("/admin/reports", headers=unknown, environ_base=proxy).status_code == 302
