"""What the browser tests share about the demo: its two recipients, how long to wait, the
notification mails it captured and the state of its copies on the simulator."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from release.devtools.demo import DemoRuntime

ALICE = "alice@example.com"
BOB = "bob@example.com"
RELEASE_URL = re.compile(r"https?://\S+/release/\S+")
TIMEOUT_MS = 30_000


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it returns something true; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def notifications_of(runtime: DemoRuntime) -> dict[str, Any]:
    """Captured mail by recipient address (only the two we expect)."""
    found = {}
    for captured in runtime.mailbox.messages():
        for rcpt in captured.rcpt_tos:
            if rcpt.lower() in (ALICE, BOB):
                found[rcpt.lower()] = captured
    return found


def copy_states(runtime: DemoRuntime, transaction: str) -> dict[str, str]:
    return {item.recipient.lower(): item.state for item in runtime.simulator.sim.copies(transaction)}
