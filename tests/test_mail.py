"""Notification building and SMTP sending, against a real aiosmtpd server."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import jinja2
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from release.config import SmtpSettings
from release.devtools.mailcapture import CaptureServer, free_port, text_and_html
from release.mail import (
    Notification,
    RecordingMailer,
    SendStatus,
    SmtpMailer,
    _scrub,
    build_notification,
    clean_text,
    defang,
)
from release.mail.templates import mail_environment

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
SENDER = "Quarantine release <release@example.org>"
RELEASE_URL = "https://release.example.com/release/AbC-123_xyz"
RECEIVED = datetime(2026, 3, 1, 14, 5, tzinfo=UTC)
EXPIRES = datetime(2026, 3, 8, 14, 5, tzinfo=UTC)


@pytest.fixture
def jinja_env() -> jinja2.Environment:
    return mail_environment("en")


def make_notification(**overrides: Any) -> Notification:
    values: dict[str, Any] = {
        "to_address": "bob@example.net",
        "release_url": RELEASE_URL,
        "blocked_sender": "alice@partner.example",
        "blocked_subject": "Quarterly figures",
        "received_at": RECEIVED,
        "expires_at": EXPIRES,
        "node": "mx1",
        "message_id": "<notify-42-7@release.example.com>",
        "organisation": "Example Corp",
    }
    values.update(overrides)
    return Notification(**values)


def roundtrip(msg: EmailMessage) -> EmailMessage:
    """Serialise and parse again, as the receiving side would see it."""
    return BytesParser(policy=default_policy).parsebytes(msg.as_bytes())


def build(jinja_env: jinja2.Environment, **overrides: Any) -> EmailMessage:
    return build_notification(make_notification(**overrides), sender=SENDER, jinja_env=jinja_env)


# --------------------------------------------------------------------------- building


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


# --------------------------------------------------------------------------- recording fake


def test_recording_mailer_fails_next_n(jinja_env: jinja2.Environment) -> None:
    mailer = RecordingMailer()
    mailer.fail_next(2)
    mailer.fail_next(1, permanent=True)
    msgs = [build(jinja_env, message_id=f"<m{i}@x>") for i in range(4)]
    results = mailer.send(msgs)
    assert [r.status for r in results] == [
        SendStatus.TEMPORARY,
        SendStatus.TEMPORARY,
        SendStatus.PERMANENT,
        SendStatus.OK,
    ]
    assert [r.message_id for r in results] == ["<m0@x>", "<m1@x>", "<m2@x>", "<m3@x>"]
    assert mailer.sent == [msgs[3]]
    assert mailer.to("BOB@example.net") == [msgs[3]]
    assert mailer.wait_for(1, timeout=0.1)


# --------------------------------------------------------------------------- real SMTP


class Handler:
    """Accepts mail, remembers each SMTP session, refuses chosen recipients with a code."""

    def __init__(self) -> None:
        self.sessions: list[Any] = []
        self.ehlos = 0
        self.messages: list[EmailMessage] = []
        self.rcpt_replies: dict[str, str] = {}
        self.data_delay = 0.0
        self.lock = threading.Lock()

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        with self.lock:
            self.ehlos += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        reply = self.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        msg = BytesParser(policy=default_policy).parsebytes(envelope.content)
        with self.lock:
            if not any(s is session for s in self.sessions):
                self.sessions.append(session)
            self.messages.append(msg)
        return "250 Accepted"


class Server:
    def __init__(self, **smtp_kwargs: Any) -> None:
        self.handler = Handler()
        self.port = free_port()
        self.smtp_kwargs = smtp_kwargs
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, server_hostname="test.localhost", **self.smtp_kwargs
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def settings_for(port: int, **overrides: Any) -> SmtpSettings:
    values: dict[str, Any] = {"host": "127.0.0.1", "port": port, "security": "none", "timeout_seconds": 5.0}
    values.update(overrides)
    return SmtpSettings(**values)


@pytest.fixture
def mailer(server: Server) -> Iterator[SmtpMailer]:
    m = SmtpMailer(settings_for(server.port), local_hostname="client.localhost")
    try:
        yield m
    finally:
        m.close()


def messages(
    jinja_env: jinja2.Environment, count: int, *, to: str = "bob@example.net", tag: str = "m"
) -> list[EmailMessage]:
    return [build(jinja_env, to_address=to, message_id=f"<{tag}{i}@x>") for i in range(count)]


def test_delivers_over_one_connection(server: Server, mailer: SmtpMailer, jinja_env: jinja2.Environment) -> None:
    results = mailer.send(messages(jinja_env, 5))
    assert all(r.ok for r in results), results
    assert [r.message_id for r in results] == [f"<m{i}@x>" for i in range(5)]
    assert len(server.handler.messages) == 5
    assert len(server.handler.sessions) == 1
    assert server.handler.ehlos == 1
    got = server.handler.messages[0]
    assert got["Message-ID"] == "<m0@x>"
    assert RELEASE_URL in text_and_html(got)[0]
    # The next batch reuses the pooled connection.
    assert all(r.ok for r in mailer.send(messages(jinja_env, 2, tag="n")))
    assert len(server.handler.sessions) == 1
    assert mailer.connections_opened == 1


def test_server_down_is_temporary(jinja_env: jinja2.Environment) -> None:
    settings = settings_for(free_port(), username="u", password="hunter2-very-secret")
    with SmtpMailer(settings, local_hostname="client.localhost") as mailer:
        results = mailer.send(messages(jinja_env, 3))
    assert [r.status for r in results] == [SendStatus.TEMPORARY] * 3
    assert all("cannot connect" in r.error and "hunter2" not in r.error for r in results)


@pytest.mark.parametrize(
    ("reply", "status"),
    [("550 5.1.1 No such user", SendStatus.PERMANENT), ("451 4.7.1 Try again later", SendStatus.TEMPORARY)],
)
def test_refused_recipient(
    server: Server, mailer: SmtpMailer, jinja_env: jinja2.Environment, reply: str, status: SendStatus
) -> None:
    server.handler.rcpt_replies["gone@example.net"] = reply
    batch = [
        *messages(jinja_env, 1, tag="a"),
        *messages(jinja_env, 1, to="gone@example.net"),
        *messages(jinja_env, 1, tag="b"),
    ]
    results = mailer.send(batch)
    assert [r.status for r in results] == [SendStatus.OK, status, SendStatus.OK]
    assert reply.split()[0] in results[1].error
    assert len(server.handler.messages) == 2
    assert len(server.handler.sessions) == 1  # the refusal did not cost the connection


def test_reconnects_once_when_the_server_dropped_the_connection(
    server: Server, mailer: SmtpMailer, jinja_env: jinja2.Environment
) -> None:
    assert mailer.send(messages(jinja_env, 1, tag="a"))[0].ok
    server.stop()  # closes the pooled connection from the server side
    server.start()
    results = mailer.send(messages(jinja_env, 2, tag="b"))
    assert all(r.ok for r in results), results
    assert mailer.connections_opened == 2
    assert [str(m["Message-ID"]) for m in server.handler.messages] == ["<a0@x>", "<b0@x>", "<b1@x>"]


def test_slow_server_times_out_as_temporary(server: Server, jinja_env: jinja2.Environment) -> None:
    server.handler.data_delay = 2.0
    with SmtpMailer(settings_for(server.port, timeout_seconds=0.5), local_hostname="client.localhost") as mailer:
        started = time.monotonic()
        results = mailer.send(messages(jinja_env, 1))
    assert results[0].status is SendStatus.TEMPORARY
    assert time.monotonic() - started < 2.0


def test_failed_login_is_temporary_and_hides_the_password(jinja_env: jinja2.Environment) -> None:
    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        return AuthResult(success=False, handled=False)

    srv = Server(authenticator=authenticator, auth_require_tls=False)
    srv.start()
    try:
        settings = settings_for(srv.port, username="release", password="hunter2-very-secret")
        with SmtpMailer(settings, local_hostname="client.localhost") as mailer:
            (result,) = mailer.send(messages(jinja_env, 1))
        assert result.status is SendStatus.TEMPORARY
        assert "535" in result.error
        assert "hunter2" not in result.error
        assert srv.handler.messages == []
    finally:
        srv.stop()


def test_scrub_removes_password_and_its_auth_encodings() -> None:
    settings = SmtpSettings(username="release", password="hunter2-very-secret")
    text = "535 bad hunter2-very-secret aHVudGVyMi12ZXJ5LXNlY3JldA== AHJlbGVhc2UAaHVudGVyMi12ZXJ5LXNlY3JldA==\r\nx"
    scrubbed = _scrub(text, settings)
    assert "hunter2" not in scrubbed and "aHVudGVy" not in scrubbed and "AHJlbGVh" not in scrubbed
    assert "\n" not in scrubbed


def test_concurrent_senders_share_a_small_pool(server: Server, jinja_env: jinja2.Environment) -> None:
    threads_count, per_thread = 8, 5
    all_results: dict[int, list[SendStatus]] = {}
    with SmtpMailer(settings_for(server.port), pool_size=2, local_hostname="client.localhost") as mailer:

        def work(n: int) -> None:
            batch = messages(jinja_env, per_thread, tag=f"t{n}-")
            all_results[n] = [r.status for r in mailer.send(batch)]

        threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        opened = mailer.connections_opened
    assert all(statuses == [SendStatus.OK] * per_thread for statuses in all_results.values())
    assert len(all_results) == threads_count
    ids = sorted(str(m["Message-ID"]) for m in server.handler.messages)
    assert ids == sorted(f"<t{n}-{i}@x>" for n in range(threads_count) for i in range(per_thread))
    assert opened <= 2
    assert len(server.handler.sessions) <= 2


def test_send_works_from_a_thread_with_a_running_event_loop(
    server: Server, mailer: SmtpMailer, jinja_env: jinja2.Environment
) -> None:
    """The Playwright trap: the caller's thread already runs a loop; sending must not care."""

    async def caller() -> list[SendStatus]:
        return [r.status for r in mailer.send(messages(jinja_env, 1))]

    # A fresh thread: pytest's main thread may carry a loop left marked running by Playwright.
    results: list[list[SendStatus]] = []
    thread = threading.Thread(target=lambda: results.append(asyncio.run(caller())))
    thread.start()
    thread.join(timeout=30)
    assert results == [[SendStatus.OK]]


def test_closed_mailer_reports_temporary(server: Server, jinja_env: jinja2.Environment) -> None:
    mailer = SmtpMailer(settings_for(server.port), local_hostname="client.localhost")
    assert mailer.send(messages(jinja_env, 1))[0].ok
    mailer.close()
    mailer.close()  # idempotent
    assert mailer.send(messages(jinja_env, 1))[0].status is SendStatus.TEMPORARY
    assert mailer.send([]) == []


# --------------------------------------------------------------------------- capture server


def test_capture_server_keeps_newest_first_with_a_cap(jinja_env: jinja2.Environment) -> None:
    capture = CaptureServer(limit=3)
    with capture:
        with SmtpMailer(settings_for(capture.port), local_hostname="client.localhost") as mailer:
            results = mailer.send(messages(jinja_env, 5))
        assert all(r.ok for r in results)
    captured = capture.messages()
    assert [str(c.message["Message-ID"]) for c in captured] == ["<m4@x>", "<m3@x>", "<m2@x>"]
    first = captured[0]
    assert first.rcpt_tos == ("bob@example.net",)
    assert first.mail_from == "release@example.org"
    assert first.received_at.tzinfo is not None
    text, html = text_and_html(first.message)
    assert RELEASE_URL in text and html is not None and RELEASE_URL in html
    assert not capture.running
    with pytest.raises(RuntimeError):
        _ = capture.port
    capture.clear()
    assert capture.messages() == []


def test_text_and_html_of_a_plain_message() -> None:
    msg = EmailMessage()
    msg.set_content("just text")
    assert text_and_html(msg) == ("just text\n", None)
