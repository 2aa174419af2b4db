"""Sending over SMTP against a real aiosmtpd server, and the recording fake tests use."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from typing import Any

import jinja2
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from release.config import SmtpSettings
from release.devtools.mailcapture import CaptureServer, free_port, text_and_html
from release.mail.sending import SendStatus, SmtpMailer, scrub
from tests.support.mailer import RecordingMailer
from tests.support.notification import RELEASE_URL, build

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
    scrubbed = scrub(text, settings)
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
