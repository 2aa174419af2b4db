"""Building the notification mail: headers, bodies, and a stranger's text made harmless."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import SMTP
from email.policy import default as default_policy
from pathlib import Path

import jinja2
import pytest

from release.devtools.mailcapture import text_and_html
from release.mail.compose import Notification, build_notification, clean_text, defang
from tests.support.notification import RELEASE_URL, SENDER, build, make_notification, roundtrip

TEMPLATES = Path(__file__).resolve().parent.parent.parent / "templates"


def test_headers_and_parts(jinja_env: jinja2.Environment) -> None:
    msg = roundtrip(build(jinja_env))
    assert msg["From"] == SENDER
    assert msg["To"] == "bob@example.net"
    assert msg["Subject"] == "A message to you was held as spam: Quarterly figures"
    assert msg["Message-ID"] == "<notify-42-7@release.example.com>"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Date"]
    assert msg.get_content_type() == "multipart/alternative"
    text, html = text_and_html(msg)
    assert html is not None
    for body in (text, html):
        assert RELEASE_URL in body
        assert "2026-03-08 14:05 UTC" in body  # until when the link works
        assert "2026-03-01 14:05 UTC" in body  # when it was received
        assert "alice@partner[.]example" in body
        assert "Quarterly figures" in body
        assert "not spam" in body
        assert "Example Corp" in body
    assert f'href="{RELEASE_URL}"' in html


def test_sender_comment_cannot_reach_the_mail() -> None:
    assert "comment" not in {f.name for f in dataclasses.fields(Notification)}


def test_same_message_id_on_rebuild(jinja_env: jinja2.Environment) -> None:
    assert build(jinja_env)["Message-ID"] == build(jinja_env)["Message-ID"]
    assert build(jinja_env, message_id="x1@host")["Message-ID"] == "<x1@host>"


@pytest.mark.parametrize("field", ["blocked_subject", "blocked_sender"])
@pytest.mark.parametrize("newline", ["\r\n", "\n", "\r", "\x00", "\u2028", "\x85"])
def test_line_breaks_never_make_headers(jinja_env: jinja2.Environment, field: str, newline: str) -> None:
    evil = f"hello{newline}Bcc: victim@example.com{newline}X-Evil: 1"
    msg = roundtrip(build(jinja_env, **{field: evil}))
    assert "Bcc" not in msg
    assert "X-Evil" not in msg
    assert sorted(msg.keys()) == sorted(
        ["From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "X-Auto-Response-Suppress"]
        + ["MIME-Version", "Content-Type"]
    )
    assert "\n" not in str(msg["Subject"]) and "\r" not in str(msg["Subject"])


def test_bad_recipient_or_message_id_is_refused(jinja_env: jinja2.Environment) -> None:
    for to in ["bob@example.net\r\nBcc: x@y.z", "not an address", "Bob <bob@example.net>", "a" * 250 + "@x.org"]:
        with pytest.raises(ValueError):
            build(jinja_env, to_address=to)
    with pytest.raises(ValueError):
        build(jinja_env, message_id="no-at-sign")


def test_markup_in_subject_is_escaped_in_html(jinja_env: jinja2.Environment) -> None:
    subject = '<script>alert(1)</script><a href="x">click</a> & more'
    text, html = text_and_html(roundtrip(build(jinja_env, blocked_subject=subject, blocked_sender="<b>x</b>@y")))
    assert html is not None
    assert "<script>" not in html and '<a href="x">' not in html and "<b>x</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&amp; more" in html
    assert "<script>alert(1)</script>" in text  # plain text is not markup


def test_links_in_untrusted_text_are_inert(jinja_env: jinja2.Environment) -> None:
    msg = roundtrip(
        build(
            jinja_env,
            blocked_subject="Pay now at https://evil.example/pay or www.evil.example",
            blocked_sender="x@evil.example",
        )
    )
    text, html = text_and_html(msg)
    assert html is not None
    for part in (str(msg["Subject"]), text, html):
        assert "https://" not in part.replace(RELEASE_URL, "")
        assert "evil.example" not in part
        assert "www." not in part
        assert "evil[.]example" in part


def test_long_subject_and_sender_are_bounded(jinja_env: jinja2.Environment) -> None:
    msg = roundtrip(build(jinja_env, blocked_subject="S" * 5000, blocked_sender="a" * 5000 + "@x.org"))
    prefix = "A message to you was held as spam: "
    subject = str(msg["Subject"])
    assert subject.startswith(prefix)
    assert len(subject) - len(prefix) == 100
    assert subject.endswith("…")
    text, html = text_and_html(msg)
    assert "S" * 100 not in text and "S" * 99 + "…" in text
    assert "a" * 255 not in text
    assert html is not None and "S" * 100 not in html


def test_empty_subject_and_unicode(jinja_env: jinja2.Environment) -> None:
    msg = roundtrip(build(jinja_env, blocked_subject="", blocked_sender="jörg@bücher.example"))
    assert str(msg["Subject"]).endswith("(no subject)")
    text, _ = text_and_html(msg)
    assert "jörg@bücher[.]example" in text


def test_bidi_and_control_characters_are_removed() -> None:
    assert clean_text("a\u202eb\u200bc\x07d\t e", 100) == "abc d e"
    assert clean_text("x" * 10, 5) == "xxxx…"


def test_defang_leaves_ordinary_text_alone() -> None:
    assert defang("Invoice 3.5, Re: meeting at 10.30") == "Invoice 3.5, Re: meeting at 10.30"
    assert defang("http://a.bc/d") == "hxxp[://]a[.]bc/d"
    assert defang("10.0.0.1") == "10[.]0[.]0[.]1"


def test_naive_times_are_refused(jinja_env: jinja2.Environment) -> None:
    with pytest.raises(ValueError, match="timezone"):
        build(jinja_env, expires_at=datetime(2026, 1, 1))


def test_other_time_zones_are_shown_in_utc(jinja_env: jinja2.Environment) -> None:
    cet = timezone(timedelta(hours=1))
    text, _ = text_and_html(build(jinja_env, expires_at=datetime(2026, 3, 8, 15, 5, tzinfo=cet)))
    assert "2026-03-08 14:05 UTC" in text


def test_html_must_be_autoescaped() -> None:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=False)  # noqa: S701 - the refusal is under test
    with pytest.raises(ValueError, match="autoescape"):
        build(env)


# --------------------------------------------------------------------------- on the wire

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


def tricky(
    subject: str = "Held: Rechnung Nr. 7 – bitte prüfen", message_id: str = "<release-1.2@release.example.org>"
) -> EmailMessage:
    """A mail whose templates render text that is hard to carry: non-ASCII, dots, long lines."""
    templates = {
        "mail/notification.txt": TRICKY_TEXT,
        "mail/notification.html": "<p>" + TRICKY_TEXT.replace("\n", "<br>\n") + "</p>",
        "mail/subject.txt": subject,
    }
    env = jinja2.Environment(loader=jinja2.DictLoader(templates), autoescape=jinja2.select_autoescape(["html"]))
    note = make_notification(message_id=message_id)
    return build_notification(note, sender=SENDER, jinja_env=env, now=datetime(2026, 3, 1, 14, 5, tzinfo=UTC))


def received(msg: EmailMessage) -> tuple[EmailMessage, bytes]:
    """The mail as an SMTP client sends it, and as the receiving side parses it."""
    wire = msg.as_bytes(policy=SMTP)
    return BytesParser(policy=default_policy).parsebytes(wire), wire


def test_bodies_and_headers_survive_the_wire() -> None:
    parsed, wire = received(tricky())
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
    (first, _), (second, _) = received(tricky()), received(tricky())
    assert first.get_boundary() and second.get_boundary()
    assert first.get_boundary() != second.get_boundary()


@pytest.mark.parametrize("field", ["subject", "message_id"])
def test_a_line_break_in_a_varying_header_is_refused(field: str) -> None:
    """A line break from a template or a caller never reaches the wire as a new header."""
    if field == "message_id":
        with pytest.raises(ValueError):
            tricky(message_id="<a@b>\r\nBcc: victim@example.net")
        return
    parsed, _ = received(tricky(subject="hi\r\nBcc: victim@example.net"))
    assert parsed["Bcc"] is None and parsed["Subject"] == "hi Bcc: victim@example.net"
