"""The demo flow in a real browser: report, proof of work, notification mail, release.

Everything is real except the people: the demo's Halon simulator (HTTP), the SMTP capture
server, the in-process worker and the vendored ALTCHA widget solving its puzzle in Chromium.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from release.devtools.demo import DemoRuntime
from release.devtools.mailcapture import text_and_html
from tests.support.browser import ALICE, BOB, RELEASE_URL, TIMEOUT_MS, copy_states, notifications_of, wait_for

pytestmark = pytest.mark.browser

COMMENT = "<script>alert(1)</script> we met at the fair"


def test_sender_reports_and_recipient_releases(
    browser: Any, demo: DemoRuntime, screenshots: Path, record_property: Callable[[str, object], None]
) -> None:
    from playwright.sync_api import expect

    subject, report_url = demo.report_links()[1]
    transaction = demo.transactions[1]
    assert set(copy_states(demo, transaction)) == {ALICE, BOB}

    context = browser.new_context(viewport={"width": 1100, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    dialogs: list[str] = []
    console_errors: list[str] = []
    page_errors: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def on_console(message: Any) -> None:
        if message.type == "error":
            source = (message.location or {}).get("url", "")
            console_errors.append(f"{page.url}: {message.text} [{source}]")

    page.on("dialog", on_dialog)
    page.on("console", on_console)
    page.on("pageerror", lambda error: page_errors.append(str(error)))

    def shot(name: str) -> None:
        page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)

    try:
        # 1. The demo index lists the report links; the sender clicks theirs.
        page.goto(f"{demo.url}/demo/")
        expect(page.get_by_role("heading", name="Demo mode")).to_be_visible()
        shot("01-demo-index")
        link = page.get_by_role("link", name=subject)
        assert link.get_attribute("href") == report_url
        link.click()
        page.wait_for_url(report_url)

        # 2. Comment, proof of work in the real widget, submit.
        expect(page.get_by_role("heading", name=re.compile("blocked"))).to_be_visible()
        page.locator("textarea#comment").fill(COMMENT)
        widget = page.locator("altcha-widget")
        expect(widget).to_be_visible()
        widget.get_by_role("checkbox").click()
        answer = page.locator('form input[name="altcha"]')
        expect(answer).to_have_value(re.compile(r".{20,}"))
        expect(widget.locator("[data-state]").first).to_have_attribute("data-state", "verified")
        shot("02-report-form")

        submitted = time.monotonic()
        page.get_by_role("button", name="Ask the recipient to release it").click()

        # 3. Both notifications reach the mailbox; the status page catches up by itself.
        notifications = wait_for(
            lambda: (found := notifications_of(demo)) and len(found) == 2 and found, 30, "both notification mails"
        )
        submit_to_mail = time.monotonic() - submitted
        print(f"submit -> both mails captured: {submit_to_mail:.3f}s")  # noqa: T201
        record_property("submit_to_mail_seconds", round(submit_to_mail, 3))

        status = page.locator("section#status")
        expect(status).to_be_visible()
        status_url = page.url
        page.evaluate("window.__notReloaded = true")
        expect(status.locator('[data-field="state"]')).to_have_text("notified", timeout=TIMEOUT_MS)
        rows = status.locator('[data-field="recipients"] li')
        expect(rows).to_have_count(2)
        expect(rows.nth(0)).to_contain_text("notified")
        expect(rows.nth(1)).to_contain_text("notified")
        assert page.evaluate("window.__notReloaded === true"), "the status page reloaded instead of live updating"
        assert page.locator("textarea#comment").count() == 0
        shot("03-report-status")

        # 4. The captured mailbox shows both notifications; alice opens hers.
        page.goto(f"{demo.url}/demo/mail")
        cards = page.locator("article.captured-mail")
        expect(cards).to_have_count(2)
        expect(page.locator("article.captured-mail", has_text=ALICE)).to_have_count(1)
        expect(page.locator("article.captured-mail", has_text=BOB)).to_have_count(1)
        shot("04-mailbox")
        alice_card_text = page.locator("article.captured-mail", has_text=ALICE).locator("pre.mail").inner_text()
        alice_text, _html = text_and_html(notifications[ALICE].message)
        assert alice_text is not None
        match = RELEASE_URL.search(alice_text)
        assert match, alice_text
        release_url = match.group(0)
        assert release_url in alice_card_text
        bob_text = text_and_html(notifications[BOB].message)[0] or ""
        bob_match = RELEASE_URL.search(bob_text)
        assert bob_match and bob_match.group(0) != release_url

        page.goto(release_url)
        expect(page.get_by_role("heading", name=re.compile("held as suspected spam"))).to_be_visible()
        comment = page.locator("blockquote.comment")
        expect(comment).to_have_text(COMMENT)  # the markup is shown as text, not run
        assert comment.locator("script").count() == 0
        details = page.locator("dl.details")
        expect(details).to_contain_text(subject)
        expect(details).to_contain_text("anna.berg@partner.example")
        expect(details).to_contain_text(ALICE)
        release_button = page.locator("form#release-form").get_by_role("button", name="Release to my mailbox")
        expect(release_button).to_be_visible()
        assert copy_states(demo, transaction)[ALICE] == "hold", "opening the release link must not release"
        shot("05-release-before")

        # 5. Release: the status updates by itself and the gateway delivers alice's copy only.
        release_button.click()
        expect(page.locator('section#status [data-field="state"]')).to_have_text("released", timeout=TIMEOUT_MS)
        wait_for(lambda: copy_states(demo, transaction)[ALICE] in ("delivered", "active"), 15, "alice's copy released")
        states = copy_states(demo, transaction)
        assert states[BOB] == "hold", states
        expect(page.locator("form#release-form")).to_have_count(0)
        shot("06-release-after")

        # 6. The sender's link now shows the status, never a second form.
        page.goto(report_url)
        expect(page.locator("section#status")).to_be_visible()
        assert page.locator("textarea#comment").count() == 0
        assert page.locator("altcha-widget").count() == 0
        assert page.url == status_url or page.url == report_url
        shot("07-report-reopened")

        assert dialogs == [], dialogs
        assert page_errors == [], page_errors
        ours = [e for e in console_errors if "/favicon.ico]" not in e]
        assert ours == [], ours
        csp = [e for e in console_errors if "Content Security Policy" in e]
        assert csp == [], csp
    finally:
        context.close()
