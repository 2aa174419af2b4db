"""Re-injecting a stored copy through SMTP: the original bytes with the original envelope,
to the relay an rspamd node names (a Postfix listener that skips the filter, docs/rspamd/).

The outcome says whether the relay has the message, and when that cannot be known: a
connection that drops after the message went out may or may not have been taken, and the
caller must not send it again on its own (release/gateway/rspamd.py).
"""

from __future__ import annotations

import asyncio
import enum
import time
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass

import aiosmtplib

from release.config import NodeSettings
from release.mail.loop import LoopThread

REPLY_LIMIT = 500
_NOT_CONNECTED = (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError)


class Outcome(enum.Enum):
    DELIVERED = "delivered"  # the relay answered 250 to the message
    UNAVAILABLE = "unavailable"  # not taken, try again later (down, 4xx)
    REFUSED = "refused"  # not taken, and a 5xx says trying again will not help
    UNCERTAIN = "uncertain"  # the message went out and no answer came back


@dataclass(frozen=True)
class RelayResult:
    outcome: Outcome
    reply: str  # the relay's answer or the error, bounded, for logs and admins


class Relay:
    """One node's re-injection relay; conversations run on a loop thread of their own."""

    def __init__(self, node: NodeSettings, local_hostname: str | None = None) -> None:
        self.node = node
        self.local_hostname = local_hostname
        self._loop = LoopThread(f"relay-{node.name}")

    @property
    def address(self) -> str:
        return f"{self.node.relay_host}:{self.node.relay_port}"

    def send(self, sender: str, recipient: str, content: bytes) -> RelayResult:
        """Give the relay one copy: ``MAIL FROM:<sender>`` (empty: the null sender),
        ``RCPT TO:<recipient>``, the bytes as they are."""
        try:
            return self._loop.run(self._send(sender, recipient, content), self._deadline)
        except FutureTimeoutError:
            return RelayResult(Outcome.UNCERTAIN, "no answer within the deadline")
        except RuntimeError as exc:  # closed: the process is stopping, nothing was sent
            return RelayResult(Outcome.UNAVAILABLE, str(exc))

    def check(self) -> tuple[bool, float, str]:
        """Connect, greet and say NOOP: (reachable, milliseconds, detail), for check-config."""
        started = time.perf_counter()

        async def probe() -> str:
            smtp = await self._connect()
            try:
                code, _ = await smtp.noop()
                return f"relay {self.address} answered NOOP with {code}"
            finally:
                smtp.close()

        try:
            detail = self._loop.run(probe(), self._deadline)
        except (*_NOT_CONNECTED, RuntimeError, FutureTimeoutError) as exc:
            return False, (time.perf_counter() - started) * 1000, f"relay {self.address}: {_describe(exc)}"
        return True, (time.perf_counter() - started) * 1000, detail

    def close(self) -> None:
        self._loop.close()

    @property
    def _deadline(self) -> float:
        # connect, greeting, (STARTTLS, EHLO,) MAIL, RCPT, DATA, the message: each bounded.
        return self.node.timeout_seconds * 8 + 5

    async def _connect(self) -> aiosmtplib.SMTP:
        node = self.node
        smtp = aiosmtplib.SMTP(
            hostname=node.relay_host,
            port=node.relay_port,
            local_hostname=self.local_hostname,
            timeout=node.timeout_seconds,
            use_tls=node.relay_security == "tls",
            start_tls=node.relay_security == "starttls",
            validate_certs=node.verify_tls,
            cert_bundle=node.ca_file or None,
        )
        try:
            await smtp.connect()
        except BaseException:
            smtp.close()
            raise
        return smtp

    async def _send(self, sender: str, recipient: str, content: bytes) -> RelayResult:
        try:
            smtp = await self._connect()
        except _NOT_CONNECTED as exc:
            return RelayResult(Outcome.UNAVAILABLE, "cannot connect: " + _describe(exc))
        try:
            return await self._transaction(smtp, sender, recipient, content)
        finally:
            try:
                await asyncio.wait_for(smtp.quit(), timeout=2)
            except (*_NOT_CONNECTED, asyncio.CancelledError):
                smtp.close()

    async def _transaction(self, smtp: aiosmtplib.SMTP, sender: str, recipient: str, content: bytes) -> RelayResult:
        try:
            if smtp.is_ehlo_or_helo_needed:
                await smtp.ehlo()  # its extensions decide the MAIL options below
        except aiosmtplib.SMTPResponseException as exc:
            return _answered(exc)
        except _NOT_CONNECTED as exc:
            return RelayResult(Outcome.UNAVAILABLE, _describe(exc))
        international = not (sender.isascii() and recipient.isascii())
        options = []
        if international:
            if not smtp.supports_extension("smtputf8"):
                return RelayResult(Outcome.REFUSED, "the relay does not offer SMTPUTF8 for a non-ASCII address")
            options.append("SMTPUTF8")
        if not content.isascii() and smtp.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        encoding = "utf-8" if international else "ascii"
        try:
            await smtp.mail(sender, options=options, encoding=encoding)
            await smtp.rcpt(recipient, encoding=encoding)
        except aiosmtplib.SMTPResponseException as exc:
            return _answered(exc)
        except _NOT_CONNECTED as exc:
            return RelayResult(Outcome.UNAVAILABLE, _describe(exc))  # the message never went out
        try:
            code, message = await smtp.data(content)
        except aiosmtplib.SMTPResponseException as exc:
            return _answered(exc)  # the relay answered: not taken
        except _NOT_CONNECTED as exc:
            return RelayResult(Outcome.UNCERTAIN, _describe(exc))
        return RelayResult(Outcome.DELIVERED, _bounded(f"{code} {message}"))


def _answered(exc: aiosmtplib.SMTPResponseException) -> RelayResult:
    outcome = Outcome.REFUSED if 500 <= exc.code < 600 else Outcome.UNAVAILABLE
    return RelayResult(outcome, _describe(exc))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _bounded(f"{exc.code} {exc.message}")
    return _bounded(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def _bounded(text: str) -> str:
    return " ".join(text.split())[:REPLY_LIMIT]
