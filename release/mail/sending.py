"""Send mail over SMTP with aiosmtplib, from synchronous callers: every SMTP conversation
runs on one event loop in a thread owned by :class:`SmtpMailer` (release/mail/loop.py)."""

from __future__ import annotations

import asyncio
import base64
import enum
import time
from collections.abc import Coroutine, Sequence
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol, TypeVar

import aiosmtplib

from release.config import SmtpSettings
from release.mail.compose import clean_text
from release.mail.loop import LoopThread

ERROR_LIMIT = 500
# How long a pooled connection may sit idle before we open a fresh one instead; servers
# commonly drop idle clients after a minute or more (RFC 5321 asks for 5 minutes).
IDLE_SECONDS = 30.0
# At most this many connections per send(): the first one plus one reconnect after a drop.
MAX_CONNECTS = 2

T = TypeVar("T")

_CONNECTION_ERRORS = (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError)


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


class NullSenderMessage(EmailMessage):
    """A mail sent with the null envelope sender ``MAIL FROM:<>``: a delivery report
    (RFC 5321 §4.5.5, RFC 3464), so that no mail system ever answers it with another report."""


class Mailer(Protocol):
    """Something that sends mail; one result per message, in order."""

    def send(self, messages: Sequence[EmailMessage]) -> list[SendResult]: ...


class SmtpMailer:
    """Send each batch over one aiosmtplib connection, kept open for the next batch.

    Reuse matters: a connection costs a greeting, EHLO, STARTTLS (aiosmtplib builds a TLS
    context for each) and LOGIN, some 20 ms of CPU (bench/README.md). At most ``pool_size``
    connections are open at once; each ``send()`` borrows one for its whole batch.
    """

    def __init__(self, settings: SmtpSettings, *, pool_size: int = 4, local_hostname: str | None = None) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.settings = settings
        self.local_hostname = local_hostname
        self.connections_opened = 0
        self._loop = LoopThread("smtp-mailer")
        # Touched only on the loop thread:
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        self._slots = asyncio.Semaphore(pool_size)

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        return self._loop.run(coro, timeout)

    def close(self) -> None:
        """Say QUIT on idle connections and stop the loop thread; later sends fail as temporary."""
        self._loop.close(self._close_idle)

    def __enter__(self) -> SmtpMailer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, messages: Sequence[EmailMessage]) -> list[SendResult]:
        """Send ``messages`` over one connection; one result per message, in order."""
        ids = [str(m.get("Message-ID", "")) for m in messages]
        results: list[SendResult] = []
        if not messages:
            return results
        # Every command is bounded by timeout_seconds; this is the outer bound for the batch
        # (two connects plus one command round per message) so a caller never hangs.
        deadline = self.settings.timeout_seconds * (2 * MAX_CONNECTS + 2 * len(messages)) + 5
        try:
            self._run(self._send_batch(list(messages), ids, results), deadline)
        except FutureTimeoutError:
            done = list(results)
            return done + [SendResult(SendStatus.TEMPORARY, "timed out", mid) for mid in ids[len(done) :]]
        except RuntimeError as exc:
            return [SendResult(SendStatus.TEMPORARY, scrub(str(exc), self.settings), mid) for mid in ids]
        return results

    async def _send_batch(self, messages: list[EmailMessage], ids: list[str], results: list[SendResult]) -> None:
        async with self._slots:
            smtp = self._take_idle()
            connects = 0 if smtp is None else 1
            try:
                for i, msg in enumerate(messages):
                    result = None
                    while result is None:
                        if smtp is None:
                            if connects == MAX_CONNECTS:
                                self._fail_rest(results, ids[i:], "connection lost again after reconnecting")
                                return
                            connects += 1
                            try:
                                smtp = await self._connect()
                            except _CONNECTION_ERRORS as exc:
                                self._fail_rest(results, ids[i:], "cannot connect: " + _describe(exc))
                                return
                        result = await _send_one(smtp, msg, ids[i])
                        if result is None or not smtp.is_connected:  # dropped, timed out or 421: reconnect
                            smtp.close()
                            smtp = None
                    results.append(self._result(result.status, result.error, ids[i]))
            except BaseException:
                # Cancelled (the batch deadline) or a bug: the connection is mid-command, never reuse it.
                if smtp is not None:
                    smtp.close()
                    smtp = None
                raise
            finally:
                if smtp is not None:
                    self._idle.append((smtp, time.monotonic()))

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
            return True, self._run(probe(), self.settings.timeout_seconds * 2 + 1)
        except (*_CONNECTION_ERRORS, RuntimeError, FutureTimeoutError) as exc:
            return False, scrub(f"{self.settings.host}:{self.settings.port}: {_describe(exc)}", self.settings)

    def _result(self, status: SendStatus, error: str, mid: str) -> SendResult:
        return SendResult(status, scrub(error, self.settings) if error else "", mid)

    def _fail_rest(self, results: list[SendResult], ids: list[str], error: str) -> None:
        results.extend(self._result(SendStatus.TEMPORARY, error, mid) for mid in ids)

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


async def _send_one(smtp: aiosmtplib.SMTP, msg: EmailMessage, mid: str) -> SendResult | None:
    """Send one message; None when the connection dropped before the server answered."""
    try:
        # None: the envelope sender comes from the From header, as aiosmtplib derives it.
        envelope_sender = "" if isinstance(msg, NullSenderMessage) else None
        refused, _ = await smtp.send_message(msg, sender=envelope_sender)
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
        status = SendStatus.PERMANENT if 500 <= exc.code < 600 else SendStatus.TEMPORARY
        return SendResult(status, "message refused: " + _describe(exc), mid)
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


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def scrub(text: str, settings: SmtpSettings) -> str:
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
    return clean_text(text, ERROR_LIMIT)
