"""How a job step says it did not finish: the worker retries, defers or gives up accordingly."""

from __future__ import annotations

from datetime import datetime


class RetryLater(Exception):
    """A step could not finish now (outage); the worker retries it with backoff."""


class PermanentFailure(Exception):
    """A step can never succeed; the worker stops retrying it."""


class Deferred(Exception):
    """A step must wait until ``until`` (a limit, not a failure): the worker re-queues the job
    for then without counting the attempt."""

    def __init__(self, until: datetime, reason: str) -> None:
        super().__init__(f"{reason}; waiting until {until.isoformat(timespec='seconds')}")
        self.until = until
        self.reason = reason
