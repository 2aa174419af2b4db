"""A Halon API simulator: a real HTTP server over an in-memory, thread-safe queue.

Demo mode, the tests and the benchmarks talk to it through the real gateway adapter, so they
exercise the same HTTP, auth and JSON code paths as production. It simulates either Halon
generation (5.x VM, 6.x halon-api), refuses every field Halon's published material does not
attest, answers proto3 JSON, and can inject latency, failures and timeouts.

- ``store``: the queue of copies and their lifecycle (:class:`SimQueue`, :class:`SimItem`).
- ``proto3``: a strict proto3-JSON reader and writer.
- ``protocol``: Halon's envelope, payloads and answers (:class:`ApiError`).
- ``node``: the HTTP API with auth, fault injection and a request log (:class:`HalonSimulator`).
- ``files``: the 5.x file reads a message's bytes come from; ``rfc5322``, ``invoice``: those bytes.
- ``overview``: the page at ``/`` listing every copy; ``form``: its form holding a new message.
- ``server``: serving it on a local port (:class:`SimulatorServer`).
- ``seed``: the messages demo mode starts with (:func:`seed_demo`).
- ``command``: `flask --app app simulator` (also ``python -m release.devtools.simulator``);
  ``nodeconfig``: the ``[[nodes]]`` block it prints and the options it parses.
"""

from release.devtools.simulator.errors import ApiError
from release.devtools.simulator.files import FILES_PATH, FILES_SIZE_PATH
from release.devtools.simulator.node import (
    API_KEY_HEADER,
    DEFAULT_API_KEY,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    LICENSE_PATH,
    PROTOBUF_PATH,
    HalonSimulator,
    RecordedRequest,
)
from release.devtools.simulator.seed import seed_demo
from release.devtools.simulator.server import SimulatorServer
from release.devtools.simulator.store import IN_QUEUE, QUARANTINE_PREFIX, Ids, SimItem, SimQueue, State

__all__ = [
    "API_KEY_HEADER",
    "DEFAULT_API_KEY",
    "DEFAULT_PASSWORD",
    "DEFAULT_USERNAME",
    "FILES_PATH",
    "FILES_SIZE_PATH",
    "IN_QUEUE",
    "LICENSE_PATH",
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
