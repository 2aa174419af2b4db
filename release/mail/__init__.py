"""Build the recipient notification and send mail over SMTP.

Everything about the blocked message (sender address, subject) was chosen by a stranger, so it
is cleaned before it touches a header or a body: control characters go, lengths are bounded,
and anything that looks like a link is defanged so mail clients do not turn it into one. The
sender's comment never goes into a mail (DESIGN §2.2): inboxes must not become a free channel.

Sending uses aiosmtplib on one event loop thread owned by :class:`SmtpMailer`; callers stay
synchronous (Flask views, worker threads) and never run ``asyncio.run`` themselves.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import re
import threading
import time
import unicodedata
from collections.abc import Sequence
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib
from jinja2 import Environment

from release.config import SmtpSettings
from release.mail.mime import alternative_mail

SUBJECT_LIMIT = 100
ADDRESS_LIMIT = 254
ORGANISATION_LIMIT = 100
ERROR_LIMIT = 500
ELLIPSIS = "…"
TEXT_TEMPLATE = "mail/notification.txt"
HTML_TEMPLATE = "mail/notification.html"
SUBJECT_TEMPLATE = "mail/subject.txt"

# Hostname-like runs (a.b, with a final label of letters) and URL schemes: what mail clients
# auto-link. "3.5" or "no. 7" stay as they are.
_HOSTLIKE = re.compile(r"(?<=[\w-])[.\u3002\uff0e\uff61](?=[\w-]*[^\W\d_][\w-]*\b)")
_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")
_SCHEME = re.compile(r"\b([a-z][a-z0-9+.-]{1,20}):(//|(?=[^\s]*@))", re.IGNORECASE)
_WWW = re.compile(r"\bwww\.", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


# --------------------------------------------------------------------------- cleaning text


def clean_text(value: str, limit: int) -> str:
    """Single-line text safe for a header: no control/format characters, bounded with "…".

    Format characters (category Cf) include bidi overrides that can disguise text; line and
    paragraph separators would break lines in some clients, so all of them become spaces or go.
    """
    chars = []
    for ch in value:
        category = unicodedata.category(ch)
        if category in ("Cc", "Zl", "Zp") or ch.isspace():
            chars.append(" ")
        elif category in ("Cf", "Cs", "Co", "Cn"):
            continue
        else:
            chars.append(ch)
    text = _SPACES.sub(" ", "".join(chars)).strip()
    if len(text) > limit:
        text = text[: limit - len(ELLIPSIS)].rstrip() + ELLIPSIS
    return text


def defang(text: str) -> str:
    """Make link-like text inert: ``http://x.com`` → ``hxxp[://]x[.]com``, ``a@b.org`` → ``a@b[.]org``.

    Mail clients auto-link URLs, host names and addresses even in plain text; a stranger's
    subject must not become a clickable link in a message that comes from us.
    """
    text = _SCHEME.sub(lambda m: _defang_scheme(m.group(1)) + ("[://]" if m.group(2) else "[:]"), text)
    text = _WWW.sub(lambda m: m.group(0)[:3] + "[.]", text)
    text = _IPV4.sub(lambda m: m.group(0).replace(".", "[.]"), text)
    return _HOSTLIKE.sub("[.]", text)


def _defang_scheme(scheme: str) -> str:
    low = scheme.lower()
    if low in ("http", "https"):
        return scheme[0] + "xx" + scheme[3:]
    return scheme


def untrusted(value: str, limit: int) -> str:
    """Clean, bound and defang a stranger's text for both header and body."""
    # Defang after bounding would let the expansion exceed the bound a little; that is fine
    # (the bound protects layout and header length, and "[.]" only adds a few characters).
    return defang(clean_text(value, limit))


def _recipient(value: str) -> Address:
    """Parse the recipient strictly: one bare address, nothing that could add a header."""
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value) or len(value) > ADDRESS_LIMIT:
        raise ValueError("recipient address contains control characters or is too long")
    try:
        address = Address(addr_spec=value.strip())
    except (ValueError, IndexError) as exc:
        raise ValueError(f"invalid recipient address: {exc}") from None
    if not address.username or not address.domain:
        raise ValueError("recipient address needs a local part and a domain")
    return address


def _message_id(value: str) -> str:
    cleaned = clean_text(value, 250).replace(" ", "")
    cleaned = cleaned.strip("<>")
    if "@" not in cleaned or not cleaned.isascii() or any(c in cleaned for c in '<>()[]\\,;:"'):
        raise ValueError("message_id must look like <unique@domain>")
    return f"<{cleaned}>"


def _format_time(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("notification times must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# --------------------------------------------------------------------------- the notification


@dataclass(frozen=True)
class Notification:
    """What a recipient is told about one held message (deliberately no sender comment)."""

    to_address: str
    release_url: str
    blocked_sender: str
    blocked_subject: str
    received_at: datetime
    expires_at: datetime
    node: str
    # Set by the caller and derived from stable data, so a resend after a crash has the same
    # Message-ID and receiving systems can drop the duplicate.
    message_id: str
    organisation: str = ""


def notification_context(n: Notification) -> dict[str, str]:
    """Template variables, all already cleaned (the HTML template still autoescapes them).

    An empty subject or sender stays empty: the templates say "(no subject)" in the mail's language.
    """
    subject = untrusted(n.blocked_subject, SUBJECT_LIMIT)
    sender = untrusted(n.blocked_sender, ADDRESS_LIMIT)
    return {
        "recipient": n.to_address,
        "sender": sender,
        "subject": subject,
        "received": _format_time(n.received_at),
        "expires": _format_time(n.expires_at),
        "release_url": n.release_url,
        "organisation": clean_text(n.organisation, ORGANISATION_LIMIT),
        "node": clean_text(n.node, 64),
    }


def _autoescapes(env: Environment, name: str) -> bool:
    setting = env.autoescape
    return bool(setting(name) if callable(setting) else setting)


def build_notification(
    n: Notification, *, sender: str, jinja_env: Environment, now: datetime | None = None
) -> EmailMessage:
    """The multipart/alternative notification mail for one recipient.

    ``jinja_env`` decides the language and branding (see :mod:`release.mail.templates`); the
    subject is a template too, so it is translated and can be overridden like the body.
    Raises ValueError for a recipient or Message-ID that cannot be sent safely (a permanent
    problem: retrying will not fix it) or a Jinja environment that would not escape the HTML.
    """
    if not _autoescapes(jinja_env, HTML_TEMPLATE):
        raise ValueError("the Jinja environment must autoescape .html templates")
    context = notification_context(n)
    text = jinja_env.get_template(TEXT_TEMPLATE).render(context)
    html = jinja_env.get_template(HTML_TEMPLATE).render(context)

    return alternative_mail(
        sender=sender,
        to=_recipient(n.to_address),
        subject=clean_text(jinja_env.get_template(SUBJECT_TEMPLATE).render(context), 2 * SUBJECT_LIMIT),
        date=now or datetime.now(UTC),
        message_id=_message_id(n.message_id),
        text=text,
        html=html,
    )


# --------------------------------------------------------------------------- the outcome


OUTCOME_TEXT_TEMPLATE = "mail/outcome.txt"
OUTCOME_HTML_TEMPLATE = "mail/outcome.html"
OUTCOME_SUBJECT_TEMPLATE = "mail/outcome_subject.txt"
REASON_LIMIT = 500


@dataclass(frozen=True)
class Outcome:
    """An admin's decision on a release the policy held back (never the sender's comment)."""

    to_address: str
    approved: bool
    reason: str
    blocked_sender: str
    blocked_subject: str
    release_url: str
    message_id: str


def build_outcome(o: Outcome, *, sender: str, jinja_env: Environment, now: datetime | None = None) -> EmailMessage:
    """The multipart/alternative mail telling a recipient what the administrators decided."""
    if not _autoescapes(jinja_env, OUTCOME_HTML_TEMPLATE):
        raise ValueError("the Jinja environment must autoescape .html templates")
    context = {
        "approved": o.approved,
        "reason": clean_text(o.reason, REASON_LIMIT),
        # Empty stays empty: the templates say "(no subject)" in the mail's language.
        "sender": untrusted(o.blocked_sender, ADDRESS_LIMIT),
        "subject": untrusted(o.blocked_subject, SUBJECT_LIMIT),
        "release_url": o.release_url,
    }
    subject = jinja_env.get_template(OUTCOME_SUBJECT_TEMPLATE).render(context)
    return alternative_mail(
        sender=sender,
        to=_recipient(o.to_address),
        subject=clean_text(subject, 2 * SUBJECT_LIMIT),
        date=now or datetime.now(UTC),
        message_id=_message_id(o.message_id),
        text=jinja_env.get_template(OUTCOME_TEXT_TEMPLATE).render(context),
        html=jinja_env.get_template(OUTCOME_HTML_TEMPLATE).render(context),
    )


# --------------------------------------------------------------------------- sending


class SendStatus(enum.Enum):
    OK = "ok"
    TEMPORARY = "temporary"  # retry later (server down, 4xx, timeouts)
    PERMANENT = "permanent"  # do not retry (5xx on RCPT/DATA, unsendable message)


@dataclass(frozen=True)
class SendResult:
    """Outcome for one message; ``error`` is for logs and admins and never holds secrets."""

    status: SendStatus
    error: str = ""
    message_id: str = ""

    @property
    def ok(self) -> bool:
        return self.status is SendStatus.OK

    @property
    def temporary(self) -> bool:
        return self.status is SendStatus.TEMPORARY

    @property
    def permanent(self) -> bool:
        return self.status is SendStatus.PERMANENT


class Mailer(Protocol):
    """Something that sends mail; one result per message, in order."""

    def send(self, messages: Sequence[EmailMessage]) -> list[SendResult]: ...


class RecordingMailer:
    """Fake mailer for unit tests: keeps what was sent, can fail the next N messages."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []
        self.batches: list[int] = []  # messages per send() call
        self._failures: list[SendResult] = []
        self._cond = threading.Condition()

    def fail_next(self, count: int = 1, *, permanent: bool = False, error: str = "simulated failure") -> None:
        """Make the next ``count`` messages fail (temporarily unless ``permanent``)."""
        status = SendStatus.PERMANENT if permanent else SendStatus.TEMPORARY
        with self._cond:
            self._failures.extend(SendResult(status, error) for _ in range(count))

    def send(self, messages: Sequence[EmailMessage]) -> list[SendResult]:
        """Record each message unless a failure was queued for it."""
        results = []
        with self._cond:
            self.batches.append(len(messages))
            for msg in messages:
                mid = str(msg.get("Message-ID", ""))
                if self._failures:
                    failure = self._failures.pop(0)
                    results.append(SendResult(failure.status, failure.error, mid))
                else:
                    self.sent.append(msg)
                    results.append(SendResult(SendStatus.OK, "", mid))
            self._cond.notify_all()
        return results

    def to(self, address: str) -> list[EmailMessage]:
        """Messages sent to ``address`` (case-insensitive)."""
        with self._cond:
            return [m for m in self.sent if str(m["To"]).lower() == address.lower()]

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` messages were sent (for tests with a worker thread)."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.sent) >= count, timeout)

    def clear(self) -> None:
        with self._cond:
            self.sent.clear()
            self._failures.clear()


# How long a pooled connection may sit idle before we open a fresh one instead; servers
# commonly drop idle clients after a minute or more (RFC 5321 asks for 5 minutes).
IDLE_SECONDS = 30.0
# At most this many connections per send(): the first one plus one reconnect after a drop.
MAX_CONNECTS = 2

_CONNECTION_ERRORS = (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError)


class SmtpMailer:
    """Send mail with aiosmtplib from synchronous code, reusing connections.

    All SMTP work runs on one event loop in a daemon thread owned by this object (started on
    first use). A small pool of connections lets several worker threads send at once; each
    ``send()`` call borrows one connection for its whole batch.
    """

    def __init__(self, settings: SmtpSettings, *, pool_size: int = 4, local_hostname: str | None = None) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.settings = settings
        self.pool_size = pool_size
        self.local_hostname = local_hostname
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        # Touched only on the loop thread:
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        self._slots: asyncio.Semaphore | None = None
        self.connections_opened = 0

    # -- loop thread ------------------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise RuntimeError("mailer is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(target=run, name="smtp-mailer", daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def close(self) -> None:
        """Say QUIT on pooled connections and stop the loop thread; later sends fail."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close_idle(), loop).result(self.settings.timeout_seconds + 1)
        except (FutureTimeoutError, RuntimeError):
            pass  # shutting down anyway; the sockets close with the loop
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        if not thread.is_alive():
            loop.close()

    def __enter__(self) -> SmtpMailer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending ----------------------------------------------------------------------------

    def send(self, messages: Sequence[EmailMessage]) -> list[SendResult]:
        """Send ``messages`` over one connection; one result per message, in order."""
        if not messages:
            return []
        ids = [str(m.get("Message-ID", "")) for m in messages]
        results: list[SendResult] = []
        # Every command is bounded by timeout_seconds; this is the outer bound for the batch
        # (two connects plus one command round per message) so a caller never hangs.
        deadline = self.settings.timeout_seconds * (2 * MAX_CONNECTS + 2 * len(messages)) + 5
        try:
            loop = self._ensure_loop()
            coro = self._send_batch(list(messages), ids, results)
            try:
                future = asyncio.run_coroutine_threadsafe(coro, loop)
            except RuntimeError:  # the loop closed meanwhile
                coro.close()
                raise
        except RuntimeError as exc:
            return [SendResult(SendStatus.TEMPORARY, _scrub(str(exc), self.settings), mid) for mid in ids]
        try:
            future.result(deadline)
        except FutureTimeoutError:
            future.cancel()
            done = list(results)
            return done + [SendResult(SendStatus.TEMPORARY, "timed out", mid) for mid in ids[len(done) :]]
        return results

    async def _send_batch(self, messages: list[EmailMessage], ids: list[str], results: list[SendResult]) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.pool_size)
        async with self._slots:
            smtp = self._take_idle()
            connects = 0 if smtp is None else 1
            try:
                for i, msg in enumerate(messages):
                    retried = False
                    while True:
                        if smtp is None:
                            if connects >= MAX_CONNECTS:
                                self._fail_rest(results, ids, i, "connection lost again after reconnecting")
                                return
                            connects += 1
                            try:
                                smtp = await self._connect()
                            except _CONNECTION_ERRORS as exc:
                                self._fail_rest(results, ids, i, "cannot connect: " + _describe(exc))
                                return
                        result = await self._send_one(smtp, msg, ids[i])
                        if not smtp.is_connected:  # dropped, timed out or 421: start afresh
                            smtp.close()
                            smtp = None
                        if result is None:  # dropped before the server answered: retry once
                            if not retried:
                                retried = True
                                continue
                            result = SendResult(SendStatus.TEMPORARY, "connection lost", ids[i])
                        results.append(_scrubbed(result, self.settings))
                        break
            except BaseException:
                # Cancelled (batch deadline) or a bug: the connection is mid-command, never reuse it.
                if smtp is not None:
                    smtp.close()
                    smtp = None
                raise
            finally:
                if smtp is not None:
                    self._idle.append((smtp, time.monotonic()))

    async def _send_one(self, smtp: aiosmtplib.SMTP, msg: EmailMessage, mid: str) -> SendResult | None:
        """Send one message; None when the connection dropped before the server answered."""
        try:
            refused, _ = await smtp.send_message(msg)
        except aiosmtplib.SMTPServerDisconnected:
            return None
        except aiosmtplib.SMTPTimeoutError as exc:
            # aiosmtplib closed the connection (unknown state); the next message reconnects.
            return SendResult(SendStatus.TEMPORARY, _describe(exc), mid)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            status = SendStatus.PERMANENT if all(500 <= c < 600 for c in codes) else SendStatus.TEMPORARY
            detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            return SendResult(status, "recipient refused: " + detail, mid)
        except aiosmtplib.SMTPDataError as exc:
            return SendResult(_by_code(exc.code), "message refused: " + _describe(exc), mid)
        except aiosmtplib.SMTPSenderRefused as exc:
            # Our own From address refused: a configuration or server problem, not this
            # recipient's; stay temporary so the job retries once an admin fixes it.
            return SendResult(SendStatus.TEMPORARY, "sender refused: " + _describe(exc), mid)
        except aiosmtplib.SMTPResponseException as exc:
            return SendResult(SendStatus.TEMPORARY, _describe(exc), mid)
        except (aiosmtplib.SMTPNotSupported, ValueError) as exc:
            # e.g. a non-ASCII address and no SMTPUTF8: retrying the same message won't help.
            return SendResult(SendStatus.PERMANENT, _describe(exc), mid)
        except OSError:
            return None
        if refused:
            # Some recipients took it, some did not: report success (a retry would duplicate
            # the accepted copies) but keep the refusals visible.
            detail = "; ".join(f"{rcpt}: {r.code} {r.message}" for rcpt, r in refused.items())
            return SendResult(SendStatus.OK, "some recipients refused: " + detail, mid)
        return SendResult(SendStatus.OK, "", mid)

    def check(self) -> tuple[bool, str]:
        """Connect, greet (STARTTLS/login as configured) and quit: for `check-config`."""

        async def probe() -> str:
            smtp = await self._connect()
            try:
                code, _ = await smtp.noop()
                return f"{self.settings.host}:{self.settings.port} answered NOOP with {code}"
            finally:
                smtp.close()

        try:
            future = asyncio.run_coroutine_threadsafe(probe(), self._ensure_loop())
            return True, future.result(self.settings.timeout_seconds * 2 + 1)
        except (*_CONNECTION_ERRORS, RuntimeError, FutureTimeoutError) as exc:
            return False, _scrub(f"{self.settings.host}:{self.settings.port}: {_describe(exc)}", self.settings)

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        smtp = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            username=s.username or None,
            password=s.password if s.username else None,
            local_hostname=self.local_hostname,
            timeout=s.timeout_seconds,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",
            validate_certs=s.verify_tls,
        )
        try:
            await smtp.connect()
        except BaseException:
            smtp.close()
            raise
        self.connections_opened += 1
        return smtp

    def _take_idle(self) -> aiosmtplib.SMTP | None:
        now = time.monotonic()
        while self._idle:
            smtp, since = self._idle.pop()
            if smtp.is_connected and now - since < IDLE_SECONDS:
                return smtp
            smtp.close()
        return None

    async def _close_idle(self) -> None:
        idle, self._idle = self._idle, []
        for smtp, _ in idle:
            try:
                await asyncio.wait_for(smtp.quit(), timeout=2)
            except (*_CONNECTION_ERRORS, asyncio.CancelledError):
                smtp.close()

    @staticmethod
    def _fail_rest(results: list[SendResult], ids: list[str], start: int, error: str) -> None:
        results.extend(SendResult(SendStatus.TEMPORARY, error, mid) for mid in ids[start:])


def _by_code(code: int) -> SendStatus:
    return SendStatus.PERMANENT if 500 <= code < 600 else SendStatus.TEMPORARY


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _scrub(text: str, settings: SmtpSettings) -> str:
    """Remove the SMTP password (and its AUTH encodings) from an error, then bound it."""
    if settings.password:
        user, password = settings.username, settings.password
        secrets = {
            password,
            base64.b64encode(password.encode()).decode(),
            base64.b64encode(f"\0{user}\0{password}".encode()).decode(),
        }
        for secret in sorted(secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
    text = clean_text(text, ERROR_LIMIT)
    return text


def _scrubbed(result: SendResult, settings: SmtpSettings) -> SendResult:
    if not result.error:
        return result
    return SendResult(result.status, _scrub(result.error, settings), result.message_id)


__all__ = [
    "HTML_TEMPLATE",
    "SUBJECT_TEMPLATE",
    "TEXT_TEMPLATE",
    "Mailer",
    "Notification",
    "RecordingMailer",
    "SendResult",
    "SendStatus",
    "SmtpMailer",
    "build_notification",
    "clean_text",
    "defang",
    "notification_context",
    "untrusted",
]
