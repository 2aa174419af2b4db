"""The headers a recipient reads: RFC 2047 decoding in any mix of charsets, raw 8-bit UTF-8,
no control or bidi characters, display names that claim another address, a Reply-To that
differs, dates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from release.preview import Limits, build_preview
from release.preview.headers import text
from release.preview.model import Headers, Mailbox


def headers(block: bytes) -> Headers:
    """The headers a preview shows for a message with header block ``block``."""
    data = block + b"\r\n\r\nbody\r\n"
    preview = build_preview(data, len(data), Limits())
    assert preview.problem is None
    return preview.headers


def subject(value: bytes) -> str:
    return headers(b"Subject: " + value).subject


# --- RFC 2047 subjects ------------------------------------------------------------------


def test_encoded_words_in_three_charsets_in_one_header() -> None:
    value = b"=?utf-8?q?caf=C3=A9?= =?iso-8859-1?q?_na=EFve?= =?koi8-r?b?8NLJ18XU?="
    # Whitespace between adjacent encoded words is not text (RFC 2047 §6.2).
    assert subject(value) == "café naïveПривет"


def test_encoded_word_in_an_unknown_charset_does_not_spoil_the_rest() -> None:
    assert subject(b"=?utf-8?q?caf=C3=A9?= =?x-unknown?q?abc?= tail") == "caféabc tail"
    assert subject(b"=?x-unknown?q?abc?=") == "abc"


def test_broken_encoded_word_stays_text_and_the_rest_decodes() -> None:
    assert subject(b"=?utf-8?q?broken =?utf-8?b?!!!?= x") == "broken =?utf-8?b?!!! x"
    # Bytes that are not UTF-8 inside a word that says it is: replaced, not a failure.
    assert subject(b"=?utf-8?b?7aCA?= ok =?utf-8?q?caf=C3=A9?=") == "\ufffd\ufffd\ufffd ok café"


def test_raw_utf8_header_with_an_encoded_word() -> None:
    raw = "Привет grüße =?utf-8?q?caf=C3=A9?=".encode()
    assert subject(raw) == "Привет grüße café"


def test_raw_utf8_header() -> None:
    found = headers("From: Jörg Müller <j@x.example>\r\nSubject: Grüße aus Köln".encode())
    assert found.subject == "Grüße aus Köln"
    assert found.sender == Mailbox("Jörg Müller", "j@x.example")


def test_raw_bytes_that_are_not_utf8_are_replaced() -> None:
    assert subject(b"gr\xfc\xdfe") == "gr\ufffd\ufffde"


def test_encoded_word_with_rfc2231_language() -> None:
    assert subject(b"=?utf-8*en?q?hello?=") == "hello"


def test_encoded_lone_surrogate_never_gets_out() -> None:
    for value in (b"=?utf-16-le?b?ANg=?=", b"=?utf-8?b?7aCA?=", b"=?utf-7?q?+2AA-?="):
        found = subject(value)
        found.encode("utf-8")  # strict: no lone surrogate


@pytest.mark.parametrize(
    "raw",
    [
        "pay\u202epal.com invoice",  # right-to-left override
        "pay\u200bpal\u2066.com\u2069 invoice",  # zero width space, isolates
        "pay\x00pal\x07.com\x1b invoice",  # C0 controls
        "pay\x85pal\x9b.com invoice",  # C1 controls
    ],
)
def test_control_and_bidi_characters_are_removed(raw: str) -> None:
    found = subject(raw.encode())
    assert found.replace(" ", "") == "paypal.cominvoice"
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0x200B <= ord(c) <= 0x202E for c in found)


def test_encoded_bidi_override_is_removed_too() -> None:
    assert subject(b"=?utf-8?q?a=E2=80=AEb?=") == "a b"


def test_text_is_bounded() -> None:
    assert len(text("x" * 10_000, 100)) == 100
    assert text(None, 10) == ""


# --- From, display names and the addresses they claim -----------------------------------


def test_display_name_that_is_another_address_is_a_claim() -> None:
    found = headers(b'From: "support@paypal.com" <evil@x.example>')
    assert found.sender == Mailbox("support@paypal.com", "evil@x.example")
    assert found.name_claims == "support@paypal.com"


def test_display_name_with_an_address_among_words_is_a_claim() -> None:
    found = headers(b"From: PayPal Service (service@paypal.com) <evil@x.example>")
    assert found.sender is not None and found.sender.address == "evil@x.example"
    assert headers(b'From: "PayPal service@paypal.com" <evil@x.example>').name_claims == "service@paypal.com"


def test_plain_display_name_is_no_claim() -> None:
    found = headers(b'From: "Bob" <bob@x>')
    assert found.sender == Mailbox("Bob", "bob@x")
    assert found.name_claims == ""


def test_display_name_naming_the_own_address_is_no_claim() -> None:
    assert headers(b'From: "bob@x.example" <bob@x.example>').name_claims == ""
    assert headers(b'From: "BOB@X.EXAMPLE" <bob@x.example>').name_claims == ""


def test_encoded_display_name_cannot_smuggle_the_address() -> None:
    found = headers(b"From: =?utf-8?q?a=40b.example_<x@y.example>?= <real@attacker.example>")
    assert found.sender is not None
    assert found.sender.address == "real@attacker.example"
    assert found.sender.name == "a@b.example <x@y.example>"
    assert found.name_claims == "a@b.example"


def test_encoded_display_name_with_spaces_cannot_smuggle_the_address() -> None:
    found = headers(b"From: =?utf-8?q?Support <x@y.example> x?= <real@attacker.example>")
    assert found.sender is not None and found.sender.address == "real@attacker.example"
    assert found.name_claims == "x@y.example"


def test_encoded_display_names_in_an_address_list() -> None:
    found = headers(b"To: =?utf-8?q?J=C3=B6rg?= <j@x.example>, =?utf-8?q?Al?= <al@x.example>")
    assert found.to == (Mailbox("Jörg", "j@x.example"), Mailbox("Al", "al@x.example"))


def test_literal_mask_text_in_a_header_is_left_alone() -> None:
    found = headers(b"From: sfrword0sfrword =?utf-8?q?x?= <a@b.example>")
    assert found.sender == Mailbox("sfrword0sfrword x", "a@b.example")


def test_bidi_override_in_display_name_is_removed() -> None:
    found = headers("From: \u202emoc.lapyap <evil@x.example>".encode())
    assert found.sender == Mailbox("moc.lapyap", "evil@x.example")


def test_deeply_nested_comments_lose_one_header_not_all() -> None:
    found = headers(b"Subject: still read\r\nFrom: a@b.example\r\nTo: " + b"(" * 5000 + b"x@y.example")
    assert found.subject == "still read"
    assert found.sender == Mailbox("", "a@b.example")


def test_many_addresses_are_capped() -> None:
    found = headers(b"To: " + b", ".join(b"u%d@x.example" % i for i in range(200)))
    assert 0 < len(found.to) <= 50


def test_header_given_twice_gives_both() -> None:
    found = headers(b"To: a@x.example\r\nTo: b@x.example\r\nCc: c@x.example")
    assert [m.address for m in found.to] == ["a@x.example", "b@x.example"]
    assert [m.address for m in found.cc] == ["c@x.example"]


# --- Reply-To ---------------------------------------------------------------------------


def test_reply_to_equal_to_from_is_not_shown() -> None:
    assert headers(b"From: Bob <bob@x.example>\r\nReply-To: BOB@x.example").reply_to == ()


def test_reply_to_that_differs_is_shown() -> None:
    found = headers(b"From: Bob <bob@x.example>\r\nReply-To: Bob <collect@y.example>")
    assert found.reply_to == (Mailbox("Bob", "collect@y.example"),)


def test_reply_to_keeps_only_the_addresses_that_differ() -> None:
    found = headers(b"From: bob@x.example\r\nReply-To: bob@x.example, other@y.example")
    assert found.reply_to == (Mailbox("", "other@y.example"),)


# --- Date ------------------------------------------------------------------------------


def test_date_with_zone() -> None:
    found = headers(b"Date: Tue, 02 Jan 2024 10:30:00 +0100")
    assert found.date == datetime(2024, 1, 2, 10, 30, tzinfo=timezone(timedelta(hours=1)))


def test_date_in_utc_with_unknown_local_zone() -> None:
    assert headers(b"Date: Tue, 02 Jan 2024 10:30:00 -0000").date == datetime(2024, 1, 2, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        b"garbage",
        b"",
        b"Tue, 32 Jan 2024 10:30:00 +0000",
        b"Tue, 02 Jan 99999 10:30:00 +0000",
        b"Mon, 1 Jan 2024 +9999",
    ],
)
def test_bad_date_is_none(value: bytes) -> None:
    assert headers(b"Date: " + value).date is None


def test_missing_headers_are_empty() -> None:
    found = headers(b"X-Other: 1")
    assert found == Headers()
