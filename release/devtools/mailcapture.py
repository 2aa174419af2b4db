"""An in-process SMTP server that keeps mail in memory, for demo mode and tests.

Demo mode has no real mail server: the mailer delivers to this one and a page shows what a
recipient would have received. Only the newest messages are kept so memory stays bounded.
"""

from __future__ import annotations

import socket
import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from typing import Any, cast

from aiosmtpd.controller import Controller

DEFAULT_LIMIT = 200
_START_ATTEMPTS = 5


@dataclass(frozen=True)
class CapturedMessage:
    """One message as the server received it."""

    message: EmailMessage
    mail_from: str
    rcpt_tos: tuple[str, ...]
    received_at: datetime
    peer: str = ""
    raw: bytes = b""  # as it arrived (after the dot-unstuffing SMTP does)

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))


class _Handler:
    """aiosmtpd handler: parse each message and hand it to the server's store."""

    def __init__(self, store: CaptureServer) -> None:
        self.store = store

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer or "")
        self.store.accept(envelope, peer)
        return "250 Message accepted for delivery"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (aiosmtpd cannot bind port 0 itself)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class CaptureServer:
    """SMTP server on 127.0.0.1 keeping the last ``limit`` messages in memory (thread-safe)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int | None = None, limit: int = DEFAULT_LIMIT) -> None:
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._messages: deque[CapturedMessage] = deque(maxlen=limit)
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def port(self) -> int:
        """The port the server listens on (only after start())."""
        if self._port is None:
            raise RuntimeError("capture server is not running")
        return self._port

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> CaptureServer:
        """Start listening; retries with another port if the picked one was taken meanwhile."""
        if self._controller is not None:
            return self
        last_error: Exception | None = None
        attempts = 1 if self._requested_port else _START_ATTEMPTS
        for _ in range(attempts):
            port = self._requested_port or free_port(self.host)
            controller = Controller(
                _Handler(self),
                hostname=self.host,
                port=port,
                # A fixed name: the default asks DNS for our FQDN, slow on some machines.
                server_hostname="capture.localhost",
                enable_SMTPUTF8=True,
            )
            try:
                controller.start()
            except (OSError, RuntimeError) as exc:  # the port got taken between pick and bind
                last_error = exc
                controller.stop(no_assert=True)
                continue
            self._controller, self._port = controller, port
            return self
        raise RuntimeError(f"could not start the capture SMTP server: {last_error}")

    def stop(self) -> None:
        """Stop the server thread; captured messages stay readable."""
        controller, self._controller = self._controller, None
        self._port = None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> CaptureServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def accept(self, envelope: Any, peer: str) -> None:
        """Parse one accepted message and keep it (called on the server's thread)."""
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        self._add(
            CapturedMessage(
                message=BytesParser(policy=default_policy).parsebytes(raw),
                mail_from=str(envelope.mail_from or ""),
                rcpt_tos=tuple(envelope.rcpt_tos),
                received_at=datetime.now(UTC),
                peer=peer,
                raw=raw,
            )
        )

    def _add(self, captured: CapturedMessage) -> None:
        with self._lock:
            self._messages.append(captured)

    def messages(self) -> list[CapturedMessage]:
        """Captured messages, newest first."""
        with self._lock:
            return list(reversed(self._messages))

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()


def text_and_html(msg: EmailMessage) -> tuple[str, str | None]:
    """The plain-text body (empty if none) and the HTML body (None if none) of ``msg``."""
    text_part = msg.get_body(preferencelist=("plain",))
    html_part = msg.get_body(preferencelist=("html",))
    text = str(cast(EmailMessage, text_part).get_content()) if text_part is not None else ""
    html = str(cast(EmailMessage, html_part).get_content()) if html_part is not None else None
    return text, html


__all__ = ["CaptureServer", "CapturedMessage", "free_port", "text_and_html"]
