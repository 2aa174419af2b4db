"""The sender's report mail: an RFC 3464 report whose every value from the gateway is inert."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import SMTP, default
from typing import Any, cast

import pytest

from release.config import I18nSettings
from release.mail.ndr import HeldReport, build_ndr
from release.mail.sending import NullSenderMessage
from release.mail.templates import MailTemplates

SENDER = "Release <release@example.org>"
ENV = MailTemplates(I18nSettings()).for_address("anna@partner.example")


def held(**overrides: Any) -> HeldReport:
    values: dict[str, Any] = {
        "to_address": "anna@partner.example",
        "recipients": ["alice@example.com"],
        "subject": "Quarterly figures",
        "received_at": datetime(2026, 3, 1, 14, 5, tzinfo=UTC),
        "report_url": "https://release.example.com/report?n=mx1&m=abc&t=1772373900&s=" + "a" * 64,
        "valid_until": datetime(2026, 3, 2, 14, 5, tzinfo=UTC),
        "hours": 24,
        "reporting_host": "release.example.com",
        "message_id": "<ndr-1@release.example.com>",
        **overrides,
    }
    return HeldReport(**values)


def on_the_wire(report: HeldReport) -> EmailMessage:
    """Built, sent as bytes (CRLF) and parsed back as a receiving mail client would."""
    built = build_ndr(report, sender=SENDER, jinja_env=ENV)
    assert isinstance(built, NullSenderMessage)
    return cast(EmailMessage, BytesParser(policy=default).parsebytes(built.as_bytes(policy=SMTP)))


def text_of(mail: EmailMessage) -> str:
    return cast(str, next(mail.iter_parts()).get_content())


def test_plain_words_and_the_link_until_when() -> None:
    mail = on_the_wire(held())
    text = text_of(mail)
    assert "Your message was not delivered to alice@example.com" in text
    assert "suspected spam" in text and "Subject:  Quarterly figures" in text
    assert held().report_url in text
    assert "until 2026-03-02 14:05 UTC (for 24 hours" in text
    assert str(mail["Subject"]) == "Undelivered mail: Quarterly figures"
    assert str(mail["From"]) == SENDER and str(mail["To"]) == "anna@partner.example"


def test_the_delivery_status_part_is_seven_bit_even_for_international_addresses() -> None:
    mail = on_the_wire(held(recipients=["alice@example.com", "jörg+x=y@exämple.de"]))
    part = list(mail.iter_parts())[1]
    assert part.get_content_type() == "message/delivery-status" and part["Content-Transfer-Encoding"] == "7bit"
    blocks = part.get_payload()
    assert str(blocks[0]["Arrival-Date"]) == "Sun, 01 Mar 2026 14:05:00 +0000"
    assert str(blocks[2]["Final-Recipient"]) == "utf-8; j\\x{F6}rg\\x{2B}x\\x{3D}y@ex\\x{E4}mple.de"
    assert part.as_bytes().isascii()


def test_a_strangers_subject_cannot_add_headers_or_links() -> None:
    mail = on_the_wire(held(subject="Win\r\nBcc: victim@example.net\r\n http://evil.example " + "x" * 500))
    assert mail["Bcc"] is None
    subject = str(mail["Subject"])
    assert "hxxp[://]evil[.]example" in subject and "http://" not in subject and len(subject) < 140
    assert "http://evil" not in text_of(mail)


def test_many_recipients_are_counted_in_words_and_listed_in_full() -> None:
    recipients = [f"user{i}@example.com" for i in range(25)]
    mail = on_the_wire(held(recipients=recipients))
    assert "user9@example.com and 15 more:" in text_of(mail)
    assert len(list(mail.iter_parts())[1].get_payload()) == 1 + 25


@pytest.mark.parametrize(
    "to_address", ["", "no-domain", "a@b.example\r\nBcc: x@y.example", "a@b.example, c@d.example", "x" * 300]
)
def test_a_sender_address_that_is_not_one_address_is_refused(to_address: str) -> None:
    with pytest.raises(ValueError):
        build_ndr(held(to_address=to_address), sender=SENDER, jinja_env=ENV)
