"""Where used CAPTCHA solutions are remembered, so that each one counts once.

A solution must be refused the second time in *any* web process, so the guard the service
wires (release/container.py) keeps them in shared storage: the database
(:class:`release.db.replay.DatabaseReplayGuard`) or, when the rate limits already use Redis,
:class:`RedisReplayGuard`. :class:`MemoryReplayGuard` is for one process (tests, tools).
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import redis

log = logging.getLogger(__name__)
# Solved challenges remembered per process by the memory guard (each lives ≤ the TTL).
MEMORY_CAPACITY = 100_000
REDIS_PREFIX = "release:captcha-used:"
# As for the rate limits: an unreachable Redis must not hang a request.
REDIS_TIMEOUT_SECONDS = 0.5


class ReplayGuard(Protocol):
    """Records a used solution's key until it expires."""

    def __call__(self, key: str, expires: float) -> bool:
        """Record ``key`` until ``expires`` (epoch seconds); True if it was already recorded
        (a replay). Atomic: of two processes recording one key at once, one gets True."""
        ...


def digest(key: str) -> str:
    """A fixed-size name for ``key`` (64 hex characters), whatever a stranger sent."""
    return hashlib.sha256(key.encode()).hexdigest()


class MemoryReplayGuard:
    """Remembers used keys until they expire, in this process only.

    Bounded: past ``capacity`` the oldest entries are forgotten first.
    """

    def __init__(self, capacity: int = MEMORY_CAPACITY, clock: Callable[[], float] = time.time) -> None:
        self._entries: OrderedDict[str, float] = OrderedDict()
        self._capacity = capacity
        self._clock = clock
        self._lock = threading.Lock()

    def __call__(self, key: str, expires: float) -> bool:
        """Record ``key`` until ``expires``; True if it was already recorded (a replay)."""
        with self._lock:
            now = self._clock()
            # Entries arrive in roughly expiry order (fixed TTL), so expired ones sit in front.
            while self._entries and next(iter(self._entries.values())) < now:
                self._entries.popitem(last=False)
            if key in self._entries:
                return True
            while len(self._entries) >= self._capacity:
                self._entries.popitem(last=False)
            self._entries[key] = expires
            return False

    def __len__(self) -> int:
        return len(self._entries)


class RedisReplayGuard:
    """Used keys as Redis keys (``SET NX EX``), shared by every process using that Redis.

    Redis down: ``fallback`` (the database guard) answers instead, with a warning in the log,
    so an outage of a cache neither lets solutions be replayed nor refuses every sender. A
    solution recorded in one store just before Redis fails or returns could be used once
    more in the other: at most one extra report per solution per outage.
    """

    def __init__(self, client: redis.Redis, fallback: ReplayGuard, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._fallback = fallback
        self._clock = clock

    @classmethod
    def from_url(cls, url: str, fallback: ReplayGuard) -> RedisReplayGuard:
        """A guard on the Redis at ``url`` (connects on first use)."""
        timeout = REDIS_TIMEOUT_SECONDS
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return cls(client, fallback)

    def __call__(self, key: str, expires: float) -> bool:
        """Record ``key`` until ``expires``; True if it was already recorded (a replay)."""
        seconds = max(1, math.ceil(expires - self._clock()))
        try:
            created = self._client.set(REDIS_PREFIX + digest(key), b"1", nx=True, ex=seconds)
        except redis.RedisError as exc:
            log.warning("CAPTCHA replay store: Redis unreachable (%s), using the database", type(exc).__name__)
            return self._fallback(key, expires)
        return not created
