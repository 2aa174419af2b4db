"""The simulated node's HTTP API: routes, auth, fault injection and a request log.

Two generations (shared/halon-api.md): 5.x, the VM's API with HTTP Basic,
``/api/5.3.0/license`` and the file reads of :mod:`.files`; 6.x, halon-api with
``X-API-Key`` and a required ``version`` envelope, ``/api/protobuf`` only (404 elsewhere).
Requests and answers follow :mod:`.protocol`. Subclasses in the tests and benchmarks extend
``_api``, ``_record``, ``_list``, ``_update`` and ``_sleep``.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from release.devtools.simulator.errors import ApiError
from release.devtools.simulator.files import FILES_PATH, FILES_SIZE_PATH, file_size, read_file
from release.devtools.simulator.form import add_from_form
from release.devtools.simulator.overview import overview_page
from release.devtools.simulator.protocol import item_json, read_change, read_request
from release.devtools.simulator.store import Ids, SimQueue

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

PROTOBUF_PATH = "/api/protobuf"
LICENSE_PATH = "/api/5.3.0/license"
DEFAULT_USERNAME = "release-api"
DEFAULT_PASSWORD = "simulator-password"  # noqa: S105 - the simulator's own local account
DEFAULT_API_KEY = "simulator-api-key"  # the simulated halon-api's authentication.secret
API_KEY_HEADER = "X-API-Key"


@dataclass
class RecordedRequest:
    """What one HTTP request carried, for assertions (``status`` is set once answered).

    ``username`` is the Basic user sent (if any); ``api_key_sent`` whether an X-API-Key
    header came; ``authorized`` whether the node accepted the credentials it expects.
    """

    method: str
    path: str
    headers: dict[str, str]
    username: str | None
    authorized: bool
    body: Any = None  # decoded JSON, or None when absent or malformed
    status: int = 0
    api_key_sent: bool = False
    query: dict[str, str] = field(default_factory=dict)  # the query parameters (first of each)

    @property
    def command(self) -> str | None:
        """The protobuf command letter, if the body had one."""
        return self.body.get("command") if isinstance(self.body, dict) else None


@dataclass
class _Fault:
    status: int | None  # None: answer normally after the delay
    body: Any = None
    delay: float = 0.0
    command: str | None = None  # only requests with this command letter; None: any
    path: str | None = None  # only requests to this path; None: any


class HalonSimulator(SimQueue):
    """In-memory Halon node of one generation: queue store, credentials, faults, request log."""

    # The report link (or the command printing it) of a transaction received at a Unix time,
    # shown on the page at `/`.
    link_for: Callable[[str, int], str] | None = None

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        *,
        generation: int = 5,
        api_keys: Iterable[str] | None = None,
        minor: int = 10,
        marker_key: str = "qid",
        auto_deliver: bool = True,
    ) -> None:
        super().__init__(generation=generation, marker_key=marker_key, auto_deliver=auto_deliver)
        self.users = dict(users) if users is not None else {DEFAULT_USERNAME: DEFAULT_PASSWORD}
        self.api_keys = list(api_keys) if api_keys is not None else [DEFAULT_API_KEY]
        self.minor = minor
        self.requests_log: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._latency = 0.0
        self._closing = threading.Event()

    # -- fault injection ----------------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        """Answer the next ``n`` API requests with ``status`` and a JSON error body."""
        self.respond_next(status, {"error": f"simulated failure (HTTP {status})"}, n)

    def respond_next(self, status: int, body: Any, n: int = 1, *, path: str | None = None) -> None:
        """Answer the next ``n`` API requests (to ``path`` only, if given) with this status and
        body (str: sent verbatim)."""
        with self._lock:
            self._faults.extend(_Fault(status, body, path=path) for _ in range(n))

    def timeout_next(
        self, n: int = 1, seconds: float = 30.0, command: str | None = None, *, path: str | None = None
    ) -> None:
        """Stall the next ``n`` API requests for ``seconds`` (past any client timeout).

        With ``command`` ("F" or "G") only requests of that command are stalled, with ``path``
        only requests to that path. The request is still carried out afterwards, as on a real
        slow node: a client timeout does not prove the update did not happen.
        """
        with self._lock:
            self._faults.extend(_Fault(None, delay=seconds, command=command, path=path) for _ in range(n))

    def set_latency(self, seconds: float) -> None:
        """Delay every API request by ``seconds`` (0 turns it off)."""
        self._latency = max(0.0, seconds)

    def close(self) -> None:
        """Cut short any injected sleeps (the server calls this when it stops)."""
        self._closing.set()

    def reopen(self) -> None:
        """Allow injected sleeps again (after :meth:`close`, when a server restarts)."""
        self._closing.clear()

    def api_calls(self, command: str | None = None) -> list[dict[str, Any]]:
        """JSON bodies of the protobuf requests received, optionally of one command."""
        with self._lock:
            records = list(self.requests_log)
        return [
            r.body
            for r in records
            if r.path == PROTOBUF_PATH and isinstance(r.body, dict) and command in (None, r.command)
        ]

    # -- HTTP ---------------------------------------------------------------------------------

    def app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI application."""
        response = self._dispatch(Request(environ))
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        if request.path in ("/", "/messages") and not _addressed_directly(request.host):
            # DNS rebinding: a page whose name now points here could read and add messages.
            return Response("open the simulator by its IP address or localhost\n", status=403, mimetype="text/plain")
        if request.path == "/" and request.method in ("GET", "HEAD"):
            return overview_page(self.items(), self.link_for)
        if request.path == "/messages" and request.method == "POST":
            return add_from_form(self, request)
        routes = {PROTOBUF_PATH: "POST"}
        if self.generation == 5:
            routes.update({LICENSE_PATH: "GET", FILES_PATH: "GET", FILES_SIZE_PATH: "POST"})
        if request.path not in routes:
            return Response("not found\n", status=404, mimetype="text/plain")
        record = self._record(request)
        try:
            response = self._api(request, record, routes[request.path])
        except ApiError as exc:
            response = _json({"error": exc.message}, exc.status)
            if exc.status == 401 and self.generation == 5:
                response.headers["WWW-Authenticate"] = 'Basic realm="Halon simulator"'
        record.status = response.status_code
        return response

    def _record(self, request: Request) -> RecordedRequest:
        auth = request.authorization
        username = auth.username if auth and auth.type == "basic" else None
        password = auth.password if auth and auth.type == "basic" else None
        api_key = request.headers.get(API_KEY_HEADER)
        if self.generation == 5:
            authorized = password is not None and _matches(password, self.users.get(username or ""))
        else:  # halon-api: the key only; Basic is not an accepted scheme
            authorized = api_key is not None and any(_matches(api_key, key) for key in self.api_keys)
        record = RecordedRequest(
            request.method,
            request.path,
            dict(request.headers),
            username,
            authorized,
            api_key_sent=api_key is not None,
            query=request.args.to_dict(),
        )
        with self._lock:
            self.requests_log.append(record)
        return record

    def _api(self, request: Request, record: RecordedRequest, method: str) -> Response:
        self._sleep(self._latency)
        fault = self._take_fault(request)
        if fault is not None:
            self._sleep(fault.delay)
            if fault.status is not None:
                if isinstance(fault.body, str):
                    return Response(fault.body, status=fault.status, mimetype="text/plain")
                return _json(fault.body, fault.status)
        if not record.authorized:
            expected = "HTTP Basic credentials" if self.generation == 5 else f"a valid {API_KEY_HEADER} header"
            raise ApiError(401, f"authentication required: {expected}")
        if request.method != method:
            raise ApiError(405, f"use {method}")
        if request.path == LICENSE_PATH:
            return _json({"serial": "SIMULATOR-0001"})  # web-logui reads the license's serial
        if request.path == FILES_PATH:
            return _json(read_file(self, request))
        if request.path == FILES_SIZE_PATH:
            return _json(file_size(self, request))
        if request.mimetype != "application/json":
            raise ApiError(415, "Content-Type must be application/json")
        try:
            record.body = json.loads(request.get_data())
        except ValueError:
            raise ApiError(400, "malformed JSON") from None
        return _json(self._protobuf(record.body))

    def _take_fault(self, request: Request) -> _Fault | None:
        """The first queued fault for this request's command (faults for any command match all)."""
        with self._lock:
            if not self._faults:
                return None
            body = request.get_json(silent=True)
            command = body.get("command") if isinstance(body, dict) else None
            for i, fault in enumerate(self._faults):
                if fault.command in (None, command) and fault.path in (None, request.path):
                    return self._faults.pop(i)
        return None

    def _protobuf(self, body: Any) -> dict[str, Any]:
        parsed = read_request(body, self.generation)
        if parsed.change is None:
            return self._list(parsed.ids)
        return self._update(parsed.ids, parsed.payload)

    def _list(self, ids: Ids) -> dict[str, Any]:
        """F: the named copies still queued; ``{}`` when none (proto3 leaves out an empty list)."""
        items = [item_json(item, self.generation) for item in self.queued(ids)]
        return {"items": items} if items else {}

    def _update(self, ids: Ids, payload: dict[str, Any]) -> dict[str, Any]:
        """G: ``{}`` on success (the real answer's fields are unknown); 404 when nothing matched."""
        change = read_change(payload)
        if not self.update(ids, change.metadata, release=change.release, delete=change.delete):
            raise ApiError(404, "no queued message matches the ids")
        return {}

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._closing.wait(seconds)


def _matches(given: str, expected: str | None) -> bool:
    return expected is not None and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _addressed_directly(host: str) -> bool:
    """The Host is an IP literal or localhost: names nobody else can point at this machine."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").lower()
    if name in ("localhost", "localhost.localdomain"):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")
