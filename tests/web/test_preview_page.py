"""The release page's preview, as a recipient's browser gets it over HTTP: what it shows of
a genuine invoice and of a phish, the sandboxed frame and its signed address, the size cap,
the switches, and that the sender's pages show nothing of the content."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from html.parser import HTMLParser

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import select

from release.db.models import AuditEntry, Recipient
from release.gateway.stored import message_id_of
from release.web.preview import SALT
from tests.support.console import ADMIN, VIEWER, open_console
from tests.support.previews import PDF, frame_url, held_with_link, invoice, mail, phish
from tests.support.rspamd import NODE
from tests.support.stack import Stack
from tests.support.visitor import report_path


class Tags(HTMLParser):
    """Every start tag and its attributes, to assert on structure rather than substrings."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(document: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(document)
    return parser.tags


def test_a_genuine_invoice_shows_its_headers_text_links_and_attachment(make_rspamd_stack: Callable[..., Stack]) -> None:
    stack = make_rspamd_stack()
    token = held_with_link(stack, invoice(), symbols=("R_SPF_ALLOW", "R_DKIM_ALLOW", "DMARC_POLICY_ALLOW"))
    page = stack.new_client().get(f"/release/{token}")
    assert page.status_code == 200
    text = page.text
    assert "Anna Partner" in text and "&lt;anna@partner.example&gt;" in text
    assert "SPF: pass" in text and "DKIM: pass" in text and "DMARC: pass" in text
    assert "please find invoice 2026-118 attached." in text  # the text part
    assert "pay.partner.example" in text and "partner.example" in text
    assert "invoice-2026-118.pdf" in text and "application/pdf" in text
    assert "Warning:" not in text and "⚠" not in text  # nothing to warn about
    # The frame is allowed by this page's policy, and only from this origin.
    assert "frame-src 'self'" in page.headers["Content-Security-Policy"]
    frame = stack.new_client().get(frame_url(text))
    assert frame.status_code == 200
    assert frame.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert "sandbox" in frame.headers["Content-Security-Policy"]
    assert frame.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert frame.headers["Cache-Control"] == "no-store"
    found = tags(frame.text)
    assert ("img", {"alt": "Partner logo", "width": "120", "height": "40"}) in found  # a placeholder, no src
    anchors = [attrs for tag, attrs in found if tag == "a"]
    assert anchors == [{"class": "sfr-link", "title": "https://pay.partner.example/inv/2026-118",
                        "data-to": "partner.example"}]  # fmt: skip


def test_a_phish_is_shown_with_every_warning_and_nothing_live(make_rspamd_stack: Callable[..., Stack]) -> None:
    stack = make_rspamd_stack()
    token = held_with_link(stack, phish(), symbols=("R_SPF_FAIL", "DMARC_POLICY_REJECT"))
    page = stack.new_client().get(f"/release/{token}").text
    assert "The name shows the address security@mybank.example, but the message comes from" in page
    assert "alerts@bank-verify.example" in page
    assert "Replies go to a different address" in page and "collect@elsewhere.example" in page
    assert "SPF: fail" in page and "DMARC: fail" in page
    assert "The text names mybank.example, but the link goes elsewhere." in page
    assert "statement.pdf.exe" in page and "Can run programs on your computer" in page
    assert "application/x-msdownload" in page  # what the bytes are, beside the declared PDF
    frame = stack.new_client().get(frame_url(page))
    assert "<script" not in frame.text and "pwned" not in frame.text
    anchors = [attrs for tag, attrs in tags(frame.text) if tag == "a"]
    assert anchors and all("href" not in attrs for attrs in anchors)
    assert anchors[0]["class"] == "sfr-link sfr-mismatch" and anchors[0]["data-to"] == "bank-verify.example"


def test_the_frame_address_is_signed_for_one_copy_and_expires(make_rspamd_stack: Callable[..., Stack]) -> None:
    stack = make_rspamd_stack(sections={"preview": {"frame_minutes": 1}})
    token = held_with_link(stack, invoice())
    url = frame_url(stack.new_client().get(f"/release/{token}").text)
    client = stack.new_client()
    assert client.get(url).status_code == 200
    signed = url.rsplit("/", 1)[1]
    for bad in (signed[:-3] + "AAA", signed[: len(signed) // 2], "x", signed.replace(".", "..", 1)):
        answer = client.get(f"/preview/{bad}")
        assert answer.status_code == 404 and "This preview has expired" in answer.text
    # The same payload, signed two minutes ago: past frame_minutes = 1.
    payload = URLSafeTimedSerializer(stack.services.settings.app.secret_key, salt=SALT).loads(signed)

    class Earlier(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 120

    stale = URLSafeTimedSerializer(stack.services.settings.app.secret_key, salt=SALT, signer=Earlier).dumps(payload)
    assert client.get(f"/preview/{stale}").status_code == 404
    # A release token's salt is not this one: another signed value of this service is refused.
    other = URLSafeTimedSerializer(stack.services.settings.app.secret_key, salt="another").dumps(payload)
    assert client.get(f"/preview/{other}").status_code == 404


def test_the_sender_sees_nothing_of_the_content(make_rspamd_stack: Callable[..., Stack]) -> None:
    stack = make_rspamd_stack()
    content = invoice()
    held_with_link(stack, content)
    sender = stack.new_client()
    page = sender.get(report_path(stack, message_id_of(content), node=NODE), follow_redirects=True).text
    assert "invoice 2026-118 attached" not in page and "invoice-2026-118.pdf" not in page
    assert "preview-frame" not in page and "/preview/" not in page


def test_a_message_over_the_cap_shows_its_headers_only(make_rspamd_stack: Callable[..., Stack]) -> None:
    stack = make_rspamd_stack(sections={"preview": {"max_bytes": 65536}})
    big = mail(subject="Big one", attachments=[("scan.pdf", "application/pdf", PDF + b"0" * 100_000)])
    token = held_with_link(stack, big)
    page = stack.new_client().get(f"/release/{token}").text
    assert "Big one" in page and "only its headers are shown" in page
    assert "scan.pdf" not in page and "preview-frame" not in page


@pytest.mark.parametrize("switch", [{"sections": {"preview": {"enabled": False}}}, {"preview": False}])
def test_previews_can_be_switched_off(make_rspamd_stack: Callable[..., Stack], switch: dict) -> None:
    stack = make_rspamd_stack(**switch)
    token = held_with_link(stack, invoice())
    page = stack.new_client().get(f"/release/{token}").text
    assert "Previews are switched off for this mail server." in page
    assert "invoice 2026-118 attached" not in page


def test_downloads_are_off_by_default_and_never_serve_programs(make_rspamd_stack: Callable[..., Stack]) -> None:
    off = make_rspamd_stack()
    token = held_with_link(off, invoice())
    page = off.new_client().get(f"/release/{token}").text
    assert "/attachments/" not in page and "cannot be downloaded here" in page
    signed = frame_url(page).rsplit("/", 1)[1]
    assert off.new_client().get(f"/preview/{signed}/attachments/0").status_code == 404


def test_allowed_downloads_serve_harmless_types_only(make_rspamd_stack: Callable[..., Stack]) -> None:
    stack = make_rspamd_stack(sections={"preview": {"allow_downloads": True}})
    pdf_and_exe = mail(attachments=[("invoice.pdf", "application/pdf", PDF),
                                    ("tool.exe", "application/octet-stream", b"MZ" + b"\x00" * 64)])  # fmt: skip
    token = held_with_link(stack, pdf_and_exe)
    page = stack.new_client().get(f"/release/{token}").text
    links = re.findall(r'href="(/preview/[^"]+/attachments/\d+)"', page)
    assert len(links) == 1  # the PDF only
    download = stack.new_client().get(links[0])
    assert download.status_code == 200 and download.data == PDF
    assert download.headers["Content-Disposition"] == 'attachment; filename="invoice.pdf"'
    assert download.headers["Content-Type"] == "application/octet-stream"
    exe = stack.new_client().get(links[0][:-1] + "1")
    assert exe.status_code == 403


def test_a_malformed_message_says_it_could_not_be_displayed(make_rspamd_stack: Callable[..., Stack]) -> None:
    stack = make_rspamd_stack()
    nested = b"".join(f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n".encode() for i in range(200))
    content = b"From: a@partner.example\r\nTo: alice@example.com\r\nSubject: deep\r\nMIME-Version: 1.0\r\n" + nested
    token = held_with_link(stack, content)
    page = stack.new_client().get(f"/release/{token}")
    assert page.status_code == 200
    assert "Could not display this message" in page.text and "deep" in page.text


def test_admins_see_the_preview_audited_and_viewers_do_not(make_rspamd_stack: Callable[..., Stack]) -> None:
    stack = make_rspamd_stack()
    held_with_link(stack, phish())
    with stack.services.db.session() as session:
        recipient_id = session.scalar(select(Recipient.id).order_by(Recipient.id).limit(1))
    console = open_console(stack)
    viewer = console.login(VIEWER)
    assert viewer.get(f"/admin/recipients/{recipient_id}/preview").status_code == 403
    admin = console.login(ADMIN)
    page = admin.get(f"/admin/recipients/{recipient_id}/preview")
    assert page.status_code == 200
    assert "statement.pdf.exe" in page.text and "This view is recorded in the audit log." in page.text
    assert stack.new_client().get(frame_url(page.text)).status_code == 200
    with stack.services.db.session() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.action == "preview.viewed")).all()
    assert [(e.actor, e.target) for e in entries] == [(ADMIN[0], f"recipient:{recipient_id}")]
    assert admin.get("/admin/recipients/999999/preview").status_code == 404


@pytest.mark.parametrize(
    ("language", "words"),
    [
        ("en", ("The message", "Links in the message", "Can run programs on your computer")),
        ("sv", ("Meddelandet", "Länkar i meddelandet", "Kan köra program på din dator")),
        ("de", ("Die Nachricht", "Links in der Nachricht", "Kann Programme auf Ihrem Computer ausführen")),
    ],
)
def test_the_preview_speaks_the_page_language(
    make_rspamd_stack: Callable[..., Stack], language: str, words: tuple[str, ...]
) -> None:
    stack = make_rspamd_stack()
    token = held_with_link(stack, phish())
    page = stack.new_client().get(f"/release/{token}", headers={"Accept-Language": language}).text
    for word in words:
        assert word in page


def test_each_preview_is_counted_by_outcome(make_rspamd_stack: Callable[..., Stack]) -> None:
    stack = make_rspamd_stack(sections={"metrics": {"token": "metrics-token-0123456789abcdef"}})
    token = held_with_link(stack, invoice())

    def shown() -> float:
        metrics = stack.client.get("/metrics", headers={"Authorization": "Bearer metrics-token-0123456789abcdef"})
        row = 'release_previews_total{node="mx3",outcome="shown"} '
        return next((float(line.split()[-1]) for line in metrics.text.splitlines() if line.startswith(row)), 0.0)

    before = shown()
    stack.new_client().get(f"/release/{token}")
    stack.new_client().get(f"/release/{token}")
    assert shown() == before + 2
