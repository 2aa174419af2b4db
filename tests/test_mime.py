"""The fast multipart/alternative builder: what a receiving mail client parses back."""

from __future__ import annotations

from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import SMTP
from email.policy import default as default_policy

import pytest

from release.mail.mime import alternative_mail, quoted_printable

TRICKY_TEXT = (
    "Grüße from Malmö – ünïcödé, 日本語\n"
    ". a line starting with a dot\n"
    "From the start of a line\n"
    "trailing blanks   \n"
    "a=b==c, and =3D is not an escape here\n"
    "a very long line " + "x" * 300 + "\n"
    "\n"
    "last line without newline"
)


def mail(**overrides: object) -> EmailMessage:
    values: dict[str, object] = {
        "sender": "Quarantine release <release@example.org>",
        "to": Address(addr_spec="bob@example.net"),
        "subject": "Held: Rechnung Nr. 7 – bitte prüfen",
        "date": datetime(2026, 3, 1, 14, 5, tzinfo=UTC),
        "message_id": "<release-1.2@release.example.org>",
        "text": TRICKY_TEXT,
        "html": "<p>" + TRICKY_TEXT.replace("\n", "<br>\n") + "</p>",
    }
    values.update(overrides)
    return alternative_mail(**values)  # type: ignore[arg-type]


def received(msg: EmailMessage) -> tuple[EmailMessage, bytes]:
    wire = msg.as_bytes(policy=SMTP)
    return BytesParser(policy=default_policy).parsebytes(wire), wire


def test_bodies_and_headers_survive_the_wire() -> None:
    parsed, wire = received(mail())
    text = parsed.get_body(preferencelist=("plain",))
    html = parsed.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert text.get_content().replace("\r\n", "\n").rstrip("\n") == TRICKY_TEXT
    assert "Grüße from Malmö" in html.get_content()
    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed["Subject"] == "Held: Rechnung Nr. 7 – bitte prüfen"
    assert parsed["To"] == "bob@example.net"
    assert parsed["From"] == "Quarantine release <release@example.org>"
    assert parsed["Date"] == "Sun, 01 Mar 2026 14:05:00 +0000"
    assert parsed["Message-ID"] == "<release-1.2@release.example.org>"
    assert parsed["MIME-Version"] == "1.0"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed.defects == [] and text.defects == [] and html.defects == []
    assert wire.isascii()  # 7-bit clean: no relay needs 8BITMIME for it
    assert max(len(line) for line in wire.split(b"\r\n")) <= 78


def test_every_mail_gets_its_own_boundary() -> None:
    first, second = mail(), mail()
    assert first.get_boundary() != second.get_boundary()


@pytest.mark.parametrize("field", ["subject", "message_id"])
def test_a_line_break_in_a_varying_header_is_refused(field: str) -> None:
    value = "<a@b>\r\nBcc: victim@example.net" if field == "message_id" else "hi\r\nBcc: victim@example.net"
    with pytest.raises(ValueError):
        mail(**{field: value}).as_bytes(policy=SMTP)


def test_quoted_printable_is_what_the_email_package_decodes() -> None:
    encoded = quoted_printable("x" * 200 + " = ü\n")
    part = EmailMessage()
    part["Content-Type"] = 'text/plain; charset="utf-8"'
    part["Content-Transfer-Encoding"] = "quoted-printable"
    part.set_payload(encoded)
    assert part.get_content() == "x" * 200 + " = ü\n"
