"""From a held message's bytes to a Preview: realistic mail, broken mail, hostile mail; the
size, part, depth and time caps; attachments by index; the gateway's own verdicts only."""

from __future__ import annotations

import base64
import time
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

import pytest

from release.preview import AuthResult, Limits, Preview, Problem, build_preview
from release.preview.build import attachment_data

LIMITS = Limits()
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<<>>\n%%EOF\n"
PE = b"MZ\x90\x00" + bytes(60)


def preview(data: bytes, limits: Limits = LIMITS, **kwargs: Any) -> Preview:
    started = time.process_time()
    found = build_preview(data, len(data), limits, **kwargs)
    assert time.process_time() - started < 3 * limits.seconds
    return found


def invoice() -> bytes:
    message = EmailMessage()
    message["From"] = '"ACME Billing" <billing@acme.example.com>'
    message["To"] = "Jörg Müller <joerg@customer.example>"
    message["Cc"] = "accounts@customer.example"
    message["Subject"] = "Rechnung Nr. 4711 – fällig am 01.02."
    message["Date"] = "Tue, 02 Jan 2024 10:30:00 +0100"
    message["Message-ID"] = "<4711@acme.example.com>"
    message.set_content("Guten Tag,\n\nanbei Ihre Rechnung. Details: https://portal.acme.example.com/inv/4711\n")
    message.add_alternative(
        "<html><head><style>p{color:red}</style></head><body><p>Guten Tag,</p><p>anbei Ihre "
        '<a href="https://portal.acme.example.com/inv/4711">Rechnung</a>.</p>'
        '<img src="https://track.acme.example.com/p.gif" alt=""></body></html>',
        subtype="html",
    )
    message.add_attachment(PDF, maintype="application", subtype="pdf", filename="Rechnung 4711.pdf")
    return message.as_bytes(policy=SMTP)


def simple(content_type: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return b"From: a@b.example\r\nSubject: t\r\nContent-Type: " + content_type + b"\r\n" + extra + b"\r\n" + body


def multipart(*parts: bytes, boundary: bytes = b"BOUNDARY", subtype: bytes = b"mixed") -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts) + b"--" + boundary + b"--\r\n"
    return simple(b"multipart/" + subtype + b"; boundary=" + boundary, body)


def attachment(name: bytes, data: bytes, kind: bytes = b"application/octet-stream") -> bytes:
    return (
        b"Content-Type: " + kind + b'\r\nContent-Disposition: attachment; filename="' + name + b'"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(data)
    )


# --- realistic mail -------------------------------------------------------------------


def test_multipart_alternative_invoice_with_a_pdf() -> None:
    found = preview(invoice())
    assert found.problem is None and found.body_shown
    assert found.headers.sender is not None and found.headers.sender.address == "billing@acme.example.com"
    assert found.headers.subject == "Rechnung Nr. 4711 – fällig am 01.02."
    assert [m.name for m in found.headers.to] == ["Jörg Müller"]
    assert [m.address for m in found.headers.cc] == ["accounts@customer.example"]
    assert found.text is not None and found.text.startswith("Guten Tag,\n\nanbei")
    assert found.html is not None
    assert "Rechnung</a>" in found.html and "href=" not in found.html and "src=" not in found.html
    assert "color:red" not in found.html  # the style sheet is gone
    assert [(link.domain, link.text) for link in found.links] == [("example.com", "Rechnung")]  # from the HTML
    [pdf] = found.attachments
    assert (pdf.index, pdf.name, pdf.declared_type, pdf.sniffed_type) == (
        0,
        "Rechnung 4711.pdf",
        "application/pdf",
        "application/pdf",
    )
    assert pdf.size == len(PDF) and not pdf.risky
    assert found.size == len(invoice())


def test_text_only() -> None:
    found = preview(simple(b"text/plain; charset=utf-8", "Grüße, see https://x.example.com/a.\r\n".encode()))
    assert found.text == "Grüße, see https://x.example.com/a.\n"
    assert found.html is None and found.attachments == ()
    assert [link.url for link in found.links] == ["https://x.example.com/a"]


def test_html_only() -> None:
    found = preview(simple(b"text/html", b"<p onclick=x>Hi <a href='https://evil.com/'>paypal.com</a></p>"))
    assert found.text is None
    assert found.html is not None and "onclick" not in found.html and "sfr-mismatch" in found.html
    [link] = found.links
    assert link.domain == "evil.com" and link.claimed_domain == "paypal.com"


def test_no_content_type_is_text() -> None:
    found = preview(b"Subject: x\r\n\r\nplain body")
    assert found.text == "plain body"


@pytest.mark.parametrize(
    ("charset", "body", "text"),
    [
        (b"x-unknown", "héllo".encode(), "héllo"),
        (b"utf-7", b"+ADw-script+AD4-", "+ADw-script+AD4-"),  # not decoded: utf-7 hides markup
        (b"utf-8", "h\xe9llo".encode("latin-1"), "h\ufffdllo"),  # declared wrong
        (b"us-ascii", "héllo".encode(), "héllo"),  # "ascii" mail is very often UTF-8
        (b"iso-8859-1", "héllo".encode("latin-1"), "héllo"),
        (b"koi8-r", "Привет".encode("koi8-r"), "Привет"),
        (b"idna", b"xn--bcher-kva", "xn--bcher-kva"),
        (b"unicode-escape", b"\\u202e", "\\u202e"),
        (b"utf-16", b"\x00\xd8a\x00", None),  # a lone surrogate
        (b'"', b"x", "x"),
        (b"", b"x", "x"),
    ],
)
def test_charset_errors_never_raise(charset: bytes, body: bytes, text: str | None) -> None:
    found = preview(simple(b"text/plain; charset=" + charset, body))
    assert found.problem is None
    assert found.text is not None
    found.text.encode("utf-8")
    if text is not None:
        assert found.text == text


def test_html_in_utf7_is_not_decoded_into_markup() -> None:
    found = preview(simple(b"text/html; charset=utf-7", b"+ADw-script+AD4-alert(1)+ADw-/script+AD4-"))
    assert found.html is not None and "<script" not in found.html


@pytest.mark.parametrize("encoding", [b"base64", b"quoted-printable", b"x-uuencode", b"8bit", b"bogus"])
def test_broken_transfer_encodings(encoding: bytes) -> None:
    body = b"!!!not base64 ===\r\n=ZZ=\r\n=\r\nbegin 644 x\r\n\xff\xfe\r\n"
    found = preview(simple(b"text/plain", body, b"Content-Transfer-Encoding: " + encoding + b"\r\n"))
    assert found.problem is None
    assert found.text is not None


# --- size and completeness ------------------------------------------------------------


def test_over_max_bytes_shows_headers_only() -> None:
    data = simple(b"text/plain", b"x" * 5000)
    found = preview(data, Limits(max_bytes=1000))
    assert found.problem is Problem.TOO_LARGE and not found.body_shown
    assert found.headers.subject == "t" and found.headers.sender is not None
    assert found.text is None and found.attachments == ()


def test_size_over_max_bytes_even_with_few_bytes_given() -> None:
    data = simple(b"text/plain", b"x")
    found = build_preview(data, 10**9, LIMITS)
    assert found.problem is Problem.TOO_LARGE and found.size == 10**9
    assert found.headers.subject == "t"


def test_incomplete_data_is_too_large() -> None:
    data = simple(b"text/plain", b"the start of a longer message")
    found = build_preview(data, len(data) + 100, LIMITS)
    assert found.problem is Problem.TOO_LARGE
    assert found.headers.subject == "t"


def test_too_large_keeps_the_gateway_verdicts() -> None:
    found = build_preview(b"Subject: x\r\n\r\n", 10**9, LIMITS, symbols=["R_SPF_FAIL"])
    assert found.problem is Problem.TOO_LARGE
    assert found.auth == (AuthResult("spf", "fail"),)


# --- complexity and time ---------------------------------------------------------------


def test_ten_thousand_parts_are_too_complex_quickly() -> None:
    parts = [b"Content-Type: text/plain\r\n\r\nx"] * 10_000
    started = time.monotonic()
    found = preview(multipart(*parts))
    assert found.problem is Problem.TOO_COMPLEX
    assert time.monotonic() - started < LIMITS.seconds + 1
    assert found.headers.subject == "t"


def test_five_hundred_deep_nesting_never_raises() -> None:
    nest = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(500))
    found = preview(b"Subject: deep\r\nMIME-Version: 1.0\r\n" + nest + b"Content-Type: text/plain\r\n\r\nhi\r\n")
    assert found.problem in (Problem.TOO_COMPLEX, Problem.MALFORMED)
    assert found.headers.subject == "deep"


def test_deep_nesting_with_many_lines_respects_the_time_cap() -> None:
    nest = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(400))
    data = b"Subject: deep\r\n" + nest + b"Content-Type: text/plain\r\n\r\n" + b"\n" * 1_500_000
    limits = Limits(seconds=0.5)
    started = time.process_time()
    found = build_preview(data, len(data), limits)
    assert time.process_time() - started < 1.5
    assert found.problem in (Problem.TOO_SLOW, Problem.TOO_COMPLEX)


def test_just_within_the_depth_cap() -> None:
    nest = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(10))
    found = preview(b"Subject: x\r\n" + nest + b"Content-Type: text/plain\r\n\r\ndeep text\r\n")
    assert found.problem is None and found.text is not None and "deep text" in found.text


@pytest.mark.parametrize(
    "field",
    [
        b'Content-Type: text/plain; a="' + b";" * 80_000 + b'"',
        b'Content-Type: application/x\r\nContent-Disposition: attachment; filename="' + b";" * 80_000 + b'"',
        b"Content-Type: text/plain" + b"; a=b" * 80_000,
        b"Content-Type: text/plain;\r\n" + b" a=b;\r\n" * 20_000,
    ],
    ids=["quoted-semicolons", "disposition", "many-parameters", "folded"],
)
def test_long_mime_parameters_are_too_complex_quickly(field: bytes) -> None:
    # The standard library parses these in quadratic time: this one took 11 s of CPU.
    data = b"Subject: params\r\n" + field + b"\r\n\r\nx"
    started = time.process_time()
    found = preview(data)
    assert time.process_time() - started < 0.5
    assert found.problem is Problem.TOO_COMPLEX
    assert found.headers.subject == "params"
    assert attachment_data(data, len(data), LIMITS, 0) is None


def test_many_parts_with_long_parameters_stay_within_the_time_cap() -> None:
    part = b'Content-Type: application/x; name="' + b";" * 8000 + b'"\r\n\r\nx'
    found = preview(multipart(*[part] * 200))
    assert found.problem in (None, Problem.TOO_SLOW)


def test_time_cap() -> None:
    found = build_preview(invoice(), len(invoice()), Limits(seconds=0))
    assert found.problem is Problem.TOO_SLOW


def test_attachments_are_capped() -> None:
    parts = [attachment(b"f%d.txt" % i, b"x") for i in range(120)]
    found = preview(multipart(*parts))
    assert len(found.attachments) == LIMITS.max_attachments
    assert found.truncated


# --- broken and odd mail -----------------------------------------------------------------


def test_truncated_multipart() -> None:
    data = multipart(b"Content-Type: text/plain\r\n\r\nhello", attachment(b"a.pdf", PDF, b"application/pdf"))
    found = preview(data[: len(data) - 60])
    assert found.problem is None
    assert found.text == "hello"
    assert [a.name for a in found.attachments] == ["a.pdf"]


def test_multipart_without_boundary() -> None:
    found = preview(simple(b"multipart/mixed", b"just text"))
    assert found.problem is None


def test_message_without_headers() -> None:
    found = preview(b"\r\nbody only\r\n")
    assert found.text == "body only\n"
    assert found.headers.sender is None and found.headers.subject == ""


def test_message_that_is_one_line() -> None:
    found = preview(b"no colon, no headers, no body")
    assert found.problem in (None, Problem.MALFORMED)


def test_empty_bytes() -> None:
    found = preview(b"")
    assert found.problem in (None, Problem.MALFORMED)
    assert found.size == 0


def test_nul_bytes() -> None:
    for data in (b"\x00" * 1000, b"Subject: a\x00b\r\n\r\nbo\x00dy", b"\x00\r\n\r\n\x00"):
        found = preview(data)
        assert "\x00" not in found.headers.subject and "\x00" not in (found.text or "")


def test_one_megabyte_single_line_header() -> None:
    found = preview(b"Subject: " + b"a" * 1_000_000 + b"\r\nFrom: x@y.example\r\n\r\nbody")
    assert found.problem is None
    assert 0 < len(found.headers.subject) <= 1000


@pytest.mark.parametrize("name", [b"To", b"From", b"Cc", b"Reply-To", b"Date", b"Authentication-Results"])
def test_one_megabyte_address_header(name: bytes) -> None:
    found = preview(name + b": " + b'(<"a@b.example, ' * 60_000 + b"\r\nSubject: s\r\n\r\nbody")
    assert found.headers.subject == "s"
    assert found.text == "body"


@pytest.mark.parametrize(
    "junk",
    [
        b"X-Junk: " + b"a" * 300_000 + b"\r\n",
        b"".join(b"X-J%d: " % i + b"b" * 60_000 + b"\r\n" for i in range(6)),
        b"X-Folded: x\r\n" + b" folded\r\n" * 40_000,
    ],
    ids=["one-long", "several-long", "folded"],
)
def test_headers_after_long_junk_headers_are_read(junk: bytes) -> None:
    data = b"Received: from x\r\n" + junk + b"From: ceo@bank.example\r\nSubject: pay now\r\n\r\nbody"
    found = preview(data)
    assert found.headers.sender is not None and found.headers.sender.address == "ceo@bank.example"
    assert found.headers.subject == "pay now"
    assert found.text == "body"


def test_a_line_that_ends_the_header_section_ends_it() -> None:
    found = preview(b"Subject: real\r\nnot a header line\r\nFrom: ceo@bank.example\r\n\r\nbody")
    assert found.headers.subject == "real"
    assert found.headers.sender is None  # the parser reads the rest as body, and so does the page


def test_two_hundred_thousand_header_lines() -> None:
    found = preview(b"X-A: b\r\n" * 200_000 + b"Subject: last\r\n\r\nbody")
    assert found.problem in (None, Problem.TOO_SLOW)


def test_forwarded_message_is_listed_not_opened() -> None:
    inner = b"Subject: inner\r\nContent-Type: text/plain\r\n\r\ninner body"
    found = preview(
        multipart(b"Content-Type: text/plain\r\n\r\nsee below", b"Content-Type: message/rfc822\r\n\r\n" + inner)
    )
    assert found.text == "see below"
    [forwarded] = found.attachments
    assert forwarded.name == "(forwarded message)" and forwarded.size == -1


def test_attachment_names_rfc2231_and_bidi() -> None:
    part = (
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''invoice%E2%80%AEfdp.exe\r\n\r\nMZ"
    )
    broken = (
        b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*=x-bogus''%FF%FE\r\n\r\nx"
    )
    surrogate = b"Content-Disposition: attachment; filename*0*=utf-8''%ED%A0%80; filename*1=.exe\r\n\r\nMZ"
    found = preview(multipart(part, broken, surrogate))
    names = [a.name for a in found.attachments]
    assert names[0] == "invoice fdp.exe" and found.attachments[0].executable
    for name in names:
        name.encode("utf-8")


# --- attachment_data -------------------------------------------------------------------


def test_attachment_data_matches_the_listing() -> None:
    data = multipart(
        b"Content-Type: text/plain\r\n\r\nbody",
        attachment(b"a.pdf", PDF, b"application/pdf"),
        b"Content-Type: text/plain\r\n\r\na second text part, not listed",
        attachment(b"b.exe", PE),
        b"Content-Type: image/png\r\nContent-ID: <logo>\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(b"\x89PNG\r\n\x1a\nrest"),
    )
    found = preview(data)
    assert [a.name for a in found.attachments] == ["a.pdf", "b.exe", "(no name)"]
    for listed in found.attachments:
        got = attachment_data(data, len(data), LIMITS, listed.index)
        assert got is not None
        assert got[0] == listed
        assert len(got[1]) == listed.size
    assert attachment_data(data, len(data), LIMITS, 0) == (found.attachments[0], PDF)
    assert attachment_data(data, len(data), LIMITS, 3) is None
    assert attachment_data(data, len(data), LIMITS, -1) is None
    assert attachment_data(data, len(data), LIMITS, 10**9) is None


def test_attachment_data_of_what_the_preview_does_not_read() -> None:
    data = multipart(attachment(b"a.pdf", PDF))
    assert attachment_data(data, len(data) + 1, LIMITS, 0) is None  # incomplete
    assert attachment_data(data, len(data), Limits(max_bytes=10), 0) is None  # too large
    assert attachment_data(data, len(data), Limits(seconds=0), 0) is None  # too slow
    assert attachment_data(b"", 0, LIMITS, 0) is None
    assert attachment_data(b"\x00garbage", 8, LIMITS, 0) is None


def test_attachment_data_of_a_forwarded_message_is_empty() -> None:
    data = multipart(b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nx")
    got = attachment_data(data, len(data), LIMITS, 0)
    assert got is not None and got[1] == b""


# --- the gateway's verdicts ------------------------------------------------------------


def test_verdicts_from_rspamd_symbols() -> None:
    symbols = ["BAYES_HAM", "R_SPF_ALLOW", "R_DKIM_REJECT", "DMARC_POLICY_QUARANTINE", "ARC_NA", "R_SPF_FAIL"]
    found = preview(invoice(), symbols=symbols)
    assert found.auth == (
        AuthResult("spf", "pass"),  # the first verdict per method counts
        AuthResult("dkim", "fail"),
        AuthResult("dmarc", "fail"),
        AuthResult("arc", "none"),
    )
    assert found.auth[0].passed and found.auth[1].failed and not found.auth[3].failed


def test_no_authentication_results_header_is_a_verdict() -> None:
    """The bytes are the message as received: any such header came with it, whoever it names."""
    data = (
        b"Authentication-Results: mx.example; spf=pass; dkim=pass; dmarc=pass\r\n"
        b"Authentication-Results: mx.example; spf=fail\r\n" + invoice()
    )
    assert preview(data).auth == ()
    assert preview(data, symbols=["R_SPF_FAIL"]).auth == (AuthResult("spf", "fail"),)
