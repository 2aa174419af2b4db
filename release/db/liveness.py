"""Is a pooled PostgreSQL connection still alive? Checked at checkout, without a round trip
for busy connections.

``pool_pre_ping`` sends a query on every checkout: a round trip and server CPU on each request.
Most dead connections announce themselves instead: a server that terminates a backend
(restart, ``pg_terminate_backend``, idle timeout) sends an error and closes the socket, so
the idle socket becomes readable. That is checked locally (one ``poll`` call). A
connection that sat idle for longer than :data:`PING_AFTER_IDLE_SECONDS` (where a firewall
may have dropped it silently) still gets the round-trip ping. What slips through (a backend
killed between this check and the query) fails the query; a GET is then run once more on a
fresh connection (application.py) and anything else gets the 503 page, as before.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DisconnectionError

PING_AFTER_IDLE_SECONDS = 10.0
_CHECKED_IN = "release_checked_in"


def note_checkin(_dbapi_connection: Any, record: Any) -> None:
    """Remember when the connection went back to the pool."""
    record.info[_CHECKED_IN] = time.monotonic()


def closed_by_server(dbapi_connection: Any) -> bool:
    """True when psycopg knows the connection is gone, or when the idle socket has something
    to read (between statements the server only writes to say goodbye)."""
    if dbapi_connection.closed or dbapi_connection.broken:
        return True
    # poll, not select: select() fails for descriptors above FD_SETSIZE (1024).
    poller = select.poll()
    poller.register(dbapi_connection.pgconn.socket, select.POLLIN)
    return bool(poller.poll(0))


def check_on_checkout(dialect: Dialect) -> Callable[[Any, Any, Any], None]:
    """The pool's checkout hook: a dead connection raises DisconnectionError, upon which the
    pool discards it and hands out another (a new one if need be)."""

    def check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in = record.info.get(_CHECKED_IN)
        if checked_in is None:
            # Just made (``info`` is per connection): nothing to check, and checking it anyway
            # could use up the pool's three reconnect attempts during a storm of terminations.
            return
        try:
            if closed_by_server(dbapi_connection):
                raise DisconnectionError("the server closed this connection")
            if time.monotonic() - checked_in > PING_AFTER_IDLE_SECONDS:
                dialect.do_ping(dbapi_connection)
        except DisconnectionError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure here means: do not use it
            raise DisconnectionError(f"liveness check failed: {type(exc).__name__}") from exc

    return check
