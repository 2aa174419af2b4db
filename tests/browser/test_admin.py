"""The admin console in a real browser: sign in, change retention, see it in the audit log."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from release import create_app
from release.config import settings_from_mapping
from release.db import migrate
from release.devtools.mailcapture import CaptureServer
from release.devtools.simulator import SimulatorServer
from release.web.admin import auth
from tests.support.config import make_config

pytestmark = pytest.mark.browser
USER, PASSWORD = "browser-admin", "a browser test password"


@pytest.fixture
def console_url(tmp_path: Path, simulator: SimulatorServer, smtp_server: CaptureServer) -> Iterator[str]:
    """The app (SQLite, plain HTTP on 127.0.0.1) with one admin account, served from a thread."""
    config = make_config(f"sqlite:///{tmp_path / 'admin.sqlite3'}", simulator, smtp_server.port,
                         app={"public_url": "http://127.0.0.1"})  # fmt: skip
    app = create_app(settings_from_mapping(config))
    services = app.extensions["release"]
    migrate.upgrade(services.db)
    with services.db.session() as session:
        auth.create_admin(session, USER, PASSWORD, "admin", actor="test")
        session.commit()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="admin-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        services.db.dispose()


def test_sign_in_change_retention_and_see_it_audited(browser: Any, console_url: str, screenshots: Path) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # The 400 of the invalid form and the missing favicon are expected; CSP and script errors are not.
    page.on(
        "console", lambda m: errors.append(m.text) if m.type == "error" and "Failed to load" not in m.text else None
    )
    try:
        page.goto(f"{console_url}/admin/settings")
        expect(page.get_by_role("heading", name="Sign in to the admin console")).to_be_visible()
        page.get_by_label("User name").fill(USER)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Retention", exact=True)).to_be_visible()
        page.screenshot(path=str(screenshots / "admin-01-settings.png"), full_page=True)

        # An invalid combination is explained next to the field.
        page.get_by_label("Short retention (hours)").fill("200")
        page.get_by_label("Long retention (days)").fill("3")
        page.get_by_role("button", name="Save").click()
        expect(page.locator('[data-error-for="long_days"]')).to_have_text(
            "Long retention must be longer than short retention."
        )

        page.get_by_label("Short retention (hours)").fill("12")
        page.get_by_label("Long retention (days)").fill("5")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("status")).to_contain_text("applies now")
        expect(page.get_by_label("Short retention (hours)")).to_have_value("12")

        page.get_by_role("link", name="Audit log").click()
        audit = page.locator("table#audit")
        expect(audit).to_contain_text("retention.short_hours")
        expect(audit).to_contain_text("24 → 12")
        expect(audit).to_contain_text("7 → 5")
        expect(audit.locator("tr", has_text="retention.short_hours")).to_contain_text(USER)
        page.screenshot(path=str(screenshots / "admin-02-audit.png"), full_page=True)

        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in to the admin console")).to_be_visible()
        assert errors == [], errors
    finally:
        context.close()
