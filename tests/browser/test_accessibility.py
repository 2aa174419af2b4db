"""axe-core (WCAG 2.1 A/AA) on every public and admin page, the release page with a
message's preview included, and the README's screenshots.

axe is injected by the test only (the app never serves it to users). With UPDATE_SCREENSHOTS=1
the full-page PNGs are written to docs/screenshots/ for the README; otherwise to the tmp dir.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from release.devtools.demo import DemoRuntime
from release.web.admin import auth
from tests.support.browser import ALICE, RELEASE_URL, TIMEOUT_MS, notifications_of, wait_for
from tests.support.previews import PreviewSite, invoice, phish

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "static" / "vendor" / "axe-core" / "axe.min.js"
RULESETS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
USER, PASSWORD = "a11y-admin", "an accessibility test password"


def _violations(page: Any) -> list[dict[str, Any]]:
    """Run axe on the page as it is now; the script is injected, never served by the app."""
    page.add_script_tag(path=str(AXE))
    result: dict[str, Any] = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", RULESETS
    )
    return list(result["violations"])


def _describe(name: str, violations: list[dict[str, Any]]) -> str:
    lines = [f"{name}:"]
    for violation in violations:
        lines.append(f"  {violation['id']} ({violation['impact']}): {violation['help']}")
        for node in violation["nodes"]:
            lines.append(f"    {node['target']} {node.get('failureSummary', '')!r}")
    return "\n".join(lines)


def _shot_dir(tmp_path: Path) -> Path:
    directory = ROOT / "docs" / "screenshots" if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path / "shots"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _add_admin(runtime: DemoRuntime) -> None:
    services = runtime.app.extensions["release"]
    with services.db.session() as session:
        auth.create_admin(session, USER, PASSWORD, "admin", actor="test")
        session.commit()


def test_every_page_has_no_wcag_violations(browser: Any, demo: DemoRuntime, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    _add_admin(demo)
    shots = _shot_dir(tmp_path)
    # bypass_csp: the injected axe script is inline, which the app's CSP rightly forbids.
    context = browser.new_context(viewport={"width": 1000, "height": 700}, bypass_csp=True)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    found: dict[str, list[dict[str, Any]]] = {}

    def audit(name: str, ready: Callable[[], None] | None = None) -> None:
        if ready:
            ready()
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        found[name] = _violations(page)

    try:
        subject, report_url = demo.report_links()[1]
        page.goto(f"{demo.url}/demo/")
        audit("01-demo-index")
        page.goto(report_url)
        audit("02-report-form", lambda: expect(page.locator("textarea#comment")).to_be_visible())

        page.locator("textarea#comment").fill("We met at the fair.")
        page.locator("altcha-widget").get_by_role("checkbox").click()
        expect(page.locator('form input[name="altcha"]')).to_have_value(re.compile(r".{20,}"))
        page.get_by_role("button", name="Ask the recipient to release it").click()
        notifications = wait_for(lambda: (f := notifications_of(demo)) and len(f) == 2 and f, 30, "notifications")
        status = page.locator('section#status [data-field="state"]')
        audit("03-report-status", lambda: expect(status).to_have_text("notified"))

        page.goto(f"{demo.url}/demo/mail")
        audit("04-mailbox", lambda: expect(page.locator("article.captured-mail")).to_have_count(2))

        text = notifications[ALICE].message.get_body(("plain",)).get_content()
        match = RELEASE_URL.search(text)
        assert match, text
        page.goto(match.group(0))
        audit("05-release-before", lambda: expect(page.locator("form#release-form")).to_be_visible())
        page.locator("form#release-form").get_by_role("button", name="Release to my mailbox").click()
        audit("06-release-after", lambda: expect(status).to_have_text("released"))

        assert page.goto(f"{demo.url}/report?n=x&m=y&t=1&s=bad").status == 400
        audit("07-error-400")
        assert page.goto(f"{demo.url}/release/no-such-token").status == 404
        audit("08-error-404")

        page.goto(f"{demo.url}/admin/reports")
        audit("09-admin-login", lambda: expect(page.get_by_label("User name")).to_be_visible())
        page.get_by_label("User name").fill(USER)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        audit("10-admin-reports", lambda: expect(page.locator("main table")).to_be_visible())
        page.locator("main table a").first.click()
        audit("11-admin-report")
        for name, path in [("12-admin-settings", "settings"), ("13-admin-stats", "stats"),
                           ("14-admin-nodes", "nodes"), ("15-admin-audit", "audit"),
                           ("16-admin-approvals", "approvals")]:  # fmt: skip
            page.goto(f"{demo.url}/admin/{path}")
            audit(name)
    finally:
        context.close()

    assert len(found) == 16, sorted(found)
    by_rule: Counter[str] = Counter()
    for violations in found.values():
        by_rule.update({v["id"]: len(v["nodes"]) for v in violations})
    print(f"axe: {len(found)} pages, failing nodes by rule: {dict(by_rule)}")  # noqa: T201
    failures = [_describe(name, v) for name, v in found.items() if v]
    assert not failures, "\n".join(failures)


def test_the_release_page_with_a_preview_has_no_wcag_violations(
    browser: Any, preview_site: PreviewSite, tmp_path: Path
) -> None:
    """A genuine invoice and a phish (every warning the preview has) on the release page of a
    service with an rspamd node: the demo's Halon simulator holds no content to preview."""
    from playwright.sync_api import expect

    shots = _shot_dir(tmp_path)
    messages = {
        "17-release-preview-invoice": (invoice(), ("R_SPF_ALLOW", "R_DKIM_ALLOW", "DMARC_POLICY_ALLOW")),
        "18-release-preview-phish": (phish(), ("R_SPF_FAIL", "DMARC_POLICY_REJECT")),
    }
    context = browser.new_context(viewport={"width": 1000, "height": 700}, bypass_csp=True)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    found: dict[str, list[dict[str, Any]]] = {}
    try:
        for name, (content, symbols) in messages.items():
            page.goto(preview_site.hold(content, symbols))
            expect(page.frame_locator("iframe.preview-frame").locator("a.sfr-link")).to_have_count(1)
            expect(page.locator("#preview-links tbody tr")).to_have_count(1)
            # Chromium paints the sandboxed frame only once it has been in view: a full-page
            # screenshot of a page whose frame starts below the viewport shows it blank.
            page.locator("iframe.preview-frame").scroll_into_view_if_needed()
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
            found[name] = _violations(page)
    finally:
        context.close()

    by_rule: Counter[str] = Counter()
    for violations in found.values():
        by_rule.update({v["id"]: len(v["nodes"]) for v in violations})
    print(f"axe: {len(found)} release pages with a preview, failing nodes by rule: {dict(by_rule)}")  # noqa: T201
    failures = [_describe(name, v) for name, v in found.items() if v]
    assert not failures, "\n".join(failures)
