"""An event loop on a thread of its own, for synchronous callers of asyncio code (aiosmtplib).

Callers are Flask views and worker threads, and a thread may already run an event loop of its
own (Playwright leaves one running), so ``asyncio.run`` is never an option there: the
coroutine runs on this loop, handed over with ``asyncio.run_coroutine_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """Starts its thread on first use (building an owner starts none); closed for good by :meth:`close`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coro`` on the loop and wait; past ``timeout`` it is cancelled and
        :class:`concurrent.futures.TimeoutError` raised. After :meth:`close`: RuntimeError."""
        with self._lock:
            if self._closed:
                coro.close()
                raise RuntimeError(f"{self.name} is closed")
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name=self.name, daemon=True)
                self._thread.start()
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except FutureTimeoutError:
            future.cancel()
            raise

    def close(self, cleanup: Callable[[], Coroutine[Any, Any, None]] | None = None) -> None:
        """Run ``cleanup`` (at most 5 s), stop the loop and join the thread."""
        with self._lock:
            self._closed, loop, thread = True, self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        if cleanup is not None:
            with contextlib.suppress(FutureTimeoutError):  # shutting down anyway: sockets close with the loop
                asyncio.run_coroutine_threadsafe(cleanup(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        if not thread.is_alive():
            loop.close()
