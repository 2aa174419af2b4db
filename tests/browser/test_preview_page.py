"""The release page's preview in Chromium with JavaScript switched off: everything it shows
is server-rendered, so the headers, the checks, the links and attachments tables, the plain
text (a native disclosure) and the sanitised HTML in its frame are all there."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.browser import TIMEOUT_MS
from tests.support.previews import PreviewSite, invoice, phish

pytestmark = pytest.mark.browser


def test_the_preview_works_without_javascript(browser: Any, preview_site: PreviewSite) -> None:
    from playwright.sync_api import expect

    genuine = preview_site.hold(invoice(), symbols=("R_SPF_ALLOW", "R_DKIM_ALLOW", "DMARC_POLICY_ALLOW"))
    phishing = preview_site.hold(phish(), symbols=("R_SPF_FAIL", "DMARC_POLICY_REJECT"))
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1000, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    page = context.new_page()
    try:
        page.goto(genuine)
        expect(page.locator("#preview-from")).to_contain_text("Anna Partner <anna@partner.example>")
        expect(page.locator("#preview-subject")).to_have_text("Invoice 2026-118")
        for verdict in ("SPF: pass", "DKIM: pass", "DMARC: pass"):
            expect(page.locator("#preview-auth")).to_contain_text(verdict)
        rows = page.locator("#preview-links tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("pay.partner.example")
        expect(rows.first).to_contain_text("https://pay.partner.example/inv/2026-118")
        expect(page.locator("#preview-attachments")).to_contain_text("invoice-2026-118.pdf")
        # The frame: the sender's formatting, its link naming its real domain, the image a placeholder.
        frame = page.frame_locator("iframe.preview-frame")
        expect(frame.locator("body")).to_contain_text("please find invoice 2026-118 attached.")
        expect(frame.locator("a.sfr-link")).to_have_attribute("data-to", "partner.example")
        expect(frame.locator("img")).to_have_attribute("alt", "Partner logo")
        # The plain text opens without script (a <details> element).
        text = page.locator("pre.preview-text")
        expect(text).to_be_hidden()
        page.get_by_text("Plain text", exact=True).click()
        expect(text).to_contain_text("please find invoice 2026-118 attached.")

        page.goto(phishing)
        expect(page.locator("#preview-from")).to_contain_text(
            "The name shows the address security@mybank.example, but the message comes from alerts@bank-verify.example."
        )
        expect(page.locator("#preview-reply-to")).to_contain_text("collect@elsewhere.example")
        expect(page.locator("#preview-links")).to_contain_text("The text names mybank.example, but the link goes")
        expect(page.locator("#preview-attachments")).to_contain_text("Can run programs on your computer")
        expect(page.frame_locator("iframe.preview-frame").locator("a.sfr-mismatch")).to_have_attribute(
            "data-to", "bank-verify.example"
        )
        page.wait_for_timeout(1_200)  # status.js would have polled by now (after 700 ms)
    finally:
        context.close()
    assert not [url for url in requests if url.endswith("/status")], "script ran: JavaScript was meant to be off"
    assert not [url for url in requests if not url.startswith(preview_site.url + "/")], requests
