"""A recording fake of :class:`release.mail.sending.Mailer` for tests without an SMTP server."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from email.message import EmailMessage

from release.mail.sending import SendResult, SendStatus


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
