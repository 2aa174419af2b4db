"""Pages in the visitor's language and with the operator's branding, on the real stack
(SQLite and PostgreSQL, the Halon simulator, aiosmtpd)."""

from __future__ import annotations

from typing import Any

import pytest

from release.devtools.mailcapture import text_and_html
from tests.support.stack import Stack
from tests.support.visitor import release_token_from, report_path, submit_report

BRANDING = {
    "organisation_name": 'Acme <b>&</b> "Co"',
    "logo_url": "https://cdn.acme.example/logo.svg",
    "primary_color": "#123abc",
    "support_contact": "https://help.acme.example/?a=1&b=2",
    "footer_text": "Acme AB <script>alert(1)</script>",
}


@pytest.fixture
def stack_sections() -> dict[str, dict[str, Any]]:
    return {"i18n": {"domain_locales": {"example.se": "sv", "firma.de": "de"}}, "branding": BRANDING}


def test_accept_language_picks_the_page_language(stack: Stack) -> None:
    path = report_path(stack, stack.sim.add_message("a@partner.example", ["x@example.com"], "Hi"))
    client = stack.client
    swedish = client.get(path, headers={"Accept-Language": "sv-SE,sv;q=0.9,en;q=0.5"})
    assert swedish.status_code == 200
    assert '<html lang="sv">' in swedish.text
    assert "Ditt meddelande stoppades som misstänkt skräppost" in swedish.text
    assert "Varför är det här meddelandet inte skräppost?" in swedish.text  # the form's label too
    assert "Accept-Language" in swedish.headers["Vary"]
    german = client.get(path, headers={"Accept-Language": "de-CH, fr;q=0.8"})
    assert "Ihre Nachricht wurde als mutmaßlicher Spam blockiert" in german.text
    english = client.get(path, headers={"Accept-Language": "fr-FR, ja;q=0.5"})
    assert '<html lang="en">' in english.text and "Your message was blocked as suspected spam" in english.text


def test_switcher_sets_a_cookie_and_keeps_the_signed_link(stack: Stack) -> None:
    path = report_path(stack, stack.sim.add_message("a@partner.example", ["x@example.com"], "Hi"))
    client = stack.client
    page = client.get(path, headers={"Accept-Language": "en"})
    assert 'hreflang="sv"' in page.text and ">Svenska</a>" in page.text and 'aria-current="true" lang="en"' in page.text
    sv_link = f"{path}&lang=sv".replace("&", "&amp;")
    assert f'href="{sv_link}"' in page.text  # same page, same signed query, plus lang
    chosen = client.get(f"{path}&lang=sv", headers={"Accept-Language": "en"})
    assert chosen.status_code == 200 and "Ditt meddelande stoppades" in chosen.text
    cookie = chosen.headers["Set-Cookie"]
    assert cookie.startswith("lang=sv;") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    # Remembered: the next page is Swedish although the browser still prefers English.
    assert "Ditt meddelande stoppades" in client.get(path, headers={"Accept-Language": "en"}).text
    assert "Set-Cookie" not in client.get(f"{path}&lang=sv").headers  # already chosen: nothing to set
    unknown = client.get(f"{path}&lang=xx", headers={"Accept-Language": "de"})
    assert unknown.status_code == 200 and "Set-Cookie" not in unknown.headers and '<html lang="sv">' in unknown.text


def test_errors_and_live_status_are_translated(stack: Stack) -> None:
    bad = stack.client.get("/report?n=mx1&m=x&t=1&s=00", headers={"Accept-Language": "de"})
    assert bad.status_code == 400
    assert "Der Link ist unvollständig oder beschädigt." in bad.text and "Fehler 400" in bad.text
    missing = stack.client.get("/release/" + "A" * 43, headers={"Accept-Language": "sv"})
    assert missing.status_code == 404 and "Den här frisläppningslänken är inte giltig." in missing.text

    tx = stack.sim.add_message("a@partner.example", ["x@example.com"], "Hi")
    path = report_path(stack, tx)
    assert submit_report(stack.client, stack, path).status_code == 303
    live = stack.client.get(path.replace("/report?", "/report/status?"), headers={"Accept-Language": "sv"})
    body = live.get_json()
    assert body["state"] == "pending" and body["state_label"] == "väntar" and body["headline"] == "Anmälan mottagen"
    english = stack.client.get(path.replace("/report?", "/report/status?") + "&lang=en").get_json()
    assert english["state_label"] == "pending" and english["headline"] == "Report received"


def test_mail_language_follows_the_recipients_domain(stack: Stack) -> None:
    rcpts = ["anna@example.se", "hans@firma.de", "bob@example.com"]
    tx = stack.sim.add_message("sender@partner.example", rcpts, "Offert 2026")
    assert submit_report(stack.new_client(), stack, report_path(stack, tx)).status_code == 303
    stack.worker.drain()
    mails = {m.rcpt_tos[0]: m.message for m in stack.smtp.messages()}
    assert set(mails) == set(rcpts)
    assert mails["anna@example.se"]["Subject"] == "Ett meddelande till dig har stoppats som skräppost: Offert 2026"
    assert mails["hans@firma.de"]["Subject"] == "Eine Nachricht an Sie wurde als Spam zurückgehalten: Offert 2026"
    assert mails["bob@example.com"]["Subject"] == "A message to you was held as spam: Offert 2026"
    text, html = text_and_html(mails["anna@example.se"])
    assert 'Skräppostfiltret hos Acme <b>&</b> "Co" har stoppat ett meddelande till dig.' in text
    assert html is not None and '<html lang="sv">' in html and "Granska meddelandet" in html
    assert "Acme &lt;b&gt;&amp;&lt;/b&gt; &#34;Co&#34;" in html and "background:#123abc" in html
    assert 'src="https://cdn.acme.example/logo.svg"' in html
    # The recipient's page follows their browser, not their domain.
    token = release_token_from(mails["anna@example.se"])
    page = stack.client.get(f"/release/{token}", headers={"Accept-Language": "sv"})
    assert "Släpp fram till min inkorg" in page.text and "Kept until" not in page.text
    assert "Release to my mailbox" in stack.client.get(f"/release/{token}", headers={"Accept-Language": "en"}).text


def test_branding_on_pages_is_escaped(stack: Stack) -> None:
    page = stack.client.get("/")
    assert page.status_code == 200
    html = page.text
    assert "Acme &lt;b&gt;&amp;&lt;/b&gt; &#34;Co&#34;" in html and "<b>&</b>" not in html
    assert "Acme AB &lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    assert 'href="https://help.acme.example/?a=1&amp;b=2"' in html
    assert '<img class="brand-logo" src="https://cdn.acme.example/logo.svg"' in html
    assert "img-src 'self' data: https://cdn.acme.example" in page.headers["Content-Security-Policy"]
    css = stack.client.get("/branding.css")
    assert css.status_code == 200 and css.mimetype == "text/css"
    assert "--bs-primary: #123abc" in css.text and "--bs-btn-hover-bg: #0f31a0" in css.text
    assert '<link rel="stylesheet" href="/branding.css">' in html


def test_admin_console_stays_english(stack: Stack) -> None:
    page = stack.client.get("/admin/login?lang=sv", headers={"Accept-Language": "sv"})
    assert page.status_code == 200
    assert '<html lang="en">' in page.text and "Skip to content" in page.text
    assert "language-switcher" not in page.text
