"""A Halon API simulator: a real HTTP server over an in-memory, thread-safe queue.

Demo mode, the tests and the benchmarks talk to it through the real :class:`HalonGateway`,
so they exercise the same HTTP, auth and JSON code paths as production. It rejects what the
real API would reject and can inject latency, failures and timeouts.

- ``store``: the queue of copies and their lifecycle (:class:`SimQueue`, :class:`SimItem`).
- ``protocol``: reading request bodies, the API's refusals (:class:`ApiError`).
- ``node``: the HTTP API with auth, fault injection and a request log (:class:`HalonSimulator`).
- ``overview``: the page at ``/`` listing every copy.
- ``server``: serving it on a local port (:class:`SimulatorServer`).
- ``seed``: the messages demo mode starts with (:func:`seed_demo`).
"""

from release.devtools.simulator.node import (
    DEFAULT_PAGE_LIMIT,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    LICENSE_PATH,
    MAX_PAGE_LIMIT,
    PROTOBUF_PATH,
    HalonSimulator,
    RecordedRequest,
)
from release.devtools.simulator.protocol import ApiError
from release.devtools.simulator.seed import seed_demo
from release.devtools.simulator.server import SimulatorServer
from release.devtools.simulator.store import IN_QUEUE, QUARANTINE_PREFIX, Ids, SimItem, SimQueue, State

__all__ = [
    "DEFAULT_PAGE_LIMIT",
    "DEFAULT_PASSWORD",
    "DEFAULT_USERNAME",
    "IN_QUEUE",
    "LICENSE_PATH",
    "MAX_PAGE_LIMIT",
    "PROTOBUF_PATH",
    "QUARANTINE_PREFIX",
    "ApiError",
    "HalonSimulator",
    "Ids",
    "RecordedRequest",
    "SimItem",
    "SimQueue",
    "SimulatorServer",
    "State",
    "seed_demo",
]
