"""One Halon node's HTTP API: authentication, the command envelope, errors and tracing.

Both generations take ``POST {api_url}/api/protobuf`` with ``{"command", "program",
"payload"}`` (shared/halon-api.md). The 5.x VM authenticates with HTTP Basic; 6.x's
``halon-api`` with ``X-API-Key`` and wants a ``version`` envelope. Everything above this
module is the same for both. The 5.x VM's other REST paths (``/api/5.3.0/...``: its file
reads) go through the same session, errors and trace (:meth:`HalonTransport.get_json`).
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import requests

from release.config import NodeSettings
from release.gateway.base import GatewayError, GatewayRejected
from release.gateway.http_body import read_bounded

PROTOBUF_PATH = "/api/protobuf"
PROGRAM = "smtpd"
API_KEY_HEADER = "X-API-Key"
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
POOL_SIZE = 64
USER_AGENT = "sender-fp-release"
ERROR_DETAIL_LIMIT = 300
REDACTED = "***"
CHUNK_SIZE = 64 * 1024
# A list answer holds one item per recipient of the asked transactions; far below this.
MAX_ANSWER_BYTES = 32 * 2**20
# A 5.x REST answer other than a file read ({"size": N}).
MAX_REST_ANSWER_BYTES = 64 * 1024
TRACE_DATA_LIMIT = 120
NOT_JSON = object()  # an answer body that is not JSON
# Stranger text from a node (errors, answers, queue items) loses these before anyone sees it.
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]+")

Trace = Callable[[str], None]


def _pooled_session() -> requests.Session:
    """A session whose connection pool covers every worker thread (no reconnect churn), and
    which ignores proxy/netrc environment lookups on each call (the node is configured)."""
    session = requests.Session()
    session.trust_env = False
    adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=POOL_SIZE)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def version_envelope(halon_version: str) -> dict[str, int]:
    """``"6.10"`` as halon-api's ``{"major": 6, "minor": 10}`` (config validation checked it)."""
    major, _, minor = halon_version.partition(".")
    return {"major": int(major), "minor": int(minor)}


class HalonTransport:
    """Sends commands to one node through one ``requests.Session`` (reuse, auth, TLS)."""

    def __init__(self, node: NodeSettings, session: requests.Session | None = None, trace: Trace | None = None) -> None:
        self.node = node
        self.base = node.api_url.rstrip("/")
        self.trace = trace
        self._session = session or _pooled_session()
        self._envelope: dict[str, Any] = {"program": PROGRAM}
        if node.type == "halon6":
            self._session.headers[API_KEY_HEADER] = node.api_key
            self._envelope["version"] = version_envelope(node.halon_version)
        else:
            self._session.auth = (node.username, node.password)
        # Passed on every call too: requests lets REQUESTS_CA_BUNDLE override a session's verify.
        self._verify: str | bool = node.ca_file or node.verify_tls
        self._session.verify = self._verify
        self._session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        self._secret_forms = _secret_forms(node)

    def close(self) -> None:
        """Release pooled connections."""
        self._session.close()

    @property
    def credential_hint(self) -> str:
        """What to check when the node refuses our credentials."""
        if self.node.type == "halon6":
            return "check api_key: it must be an authentication secret of halon-api's api.yaml"
        return "check the API user name and password"

    def call(self, command: str, payload: Mapping[str, Any]) -> dict[str, Any] | None:
        """POST one command; the decoded JSON object, or None for the API's own "not found"."""
        body = {"command": command, **self._envelope, "payload": payload}
        data = json.dumps(body).encode("utf-8")
        self._trace_request("POST", PROTOBUF_PATH, data)
        what = f"halon node {self.node.name}: command {command}"
        return self._exchange("POST", PROTOBUF_PATH, what, data=data, max_bytes=MAX_ANSWER_BYTES)

    def get_json(self, path: str, params: Mapping[str, str | int], max_bytes: int) -> dict[str, Any] | None:
        """GET a 5.x REST path with query parameters; the JSON object, or None for the API's own
        "not found". Answers are read up to ``max_bytes`` (the caller knows what it asked for)."""
        return self._rest("GET", path, params, max_bytes)

    def post_query(self, path: str, params: Mapping[str, str | int]) -> dict[str, Any] | None:
        """POST a 5.x REST path with query parameters and no body (as halon/web-logui's
        classes/ARestClient.class.php sends ``/system/files:size``); like :meth:`get_json`."""
        return self._rest("POST", path, params, MAX_REST_ANSWER_BYTES)

    def _rest(self, method: str, path: str, params: Mapping[str, str | int], max_bytes: int) -> dict[str, Any] | None:
        self._trace_request(method, f"{path}?{urlencode(params)}", None)
        what = f"halon node {self.node.name}: {method} {path}"
        return self._exchange(method, path, what, params=params, max_bytes=max_bytes)

    def _exchange(
        self,
        method: str,
        path: str,
        what: str,
        *,
        max_bytes: int,
        data: bytes | None = None,
        params: Mapping[str, str | int] | None = None,
    ) -> dict[str, Any] | None:
        """One request, its answer read within the node's timeout and ``max_bytes``, and the
        status classified: retryable (GatewayError), refused (GatewayRejected) or the API's 404."""
        timeout = self.node.timeout_seconds
        deadline = time.monotonic() + timeout
        try:
            with self._session.request(
                method,
                self.base + path,
                params=params,
                data=data,
                headers={"Content-Type": JSON_CONTENT_TYPE} if method == "POST" else None,
                timeout=timeout,
                verify=self._verify,
                allow_redirects=False,  # a redirect means a wrong api_url; never replay the body
                stream=True,  # read below against one deadline: the timeout alone is per read
            ) as response:
                content = read_bounded(response, deadline, max_bytes)
        except requests.Timeout:
            self._emit(f"<- no answer within {timeout:g}s")
            raise GatewayError(f"{what}: no answer within {timeout:g}s") from None
        except requests.RequestException as exc:
            detail = self.redact(describe(exc))
            self._emit(f"<- request failed: {detail}")
            raise GatewayError(f"{what}: request failed: {detail}") from None
        answer = _decode(content)
        self._trace_response(response.status_code, response.headers.get("Content-Type", ""), answer, content)
        status = response.status_code
        if status == 200:
            if not isinstance(answer, dict):
                raise GatewayError(f"{what}: HTTP 200 but the body is not a JSON object")
            if isinstance(answer.get("error"), str):  # Halon answers errors with HTTP >= 400
                raise GatewayError(f"{what}: HTTP 200 with an error: {self.error_text(answer, content, '')}")
            return answer
        reason = self.error_text(answer, content, response.headers.get("Content-Type", ""))
        message = f"{what}: HTTP {status}" + (f": {reason}" if reason else "")
        if status in (408, 429) or status >= 500:
            raise GatewayError(message)
        if status == 404 and answer is not NOT_JSON:
            return None
        if status == 404:
            # Not the API's own "not found" (no JSON): most likely api_url points elsewhere.
            raise GatewayRejected(f"{message} (no Halon API at {self.base}{path}? check api_url)")
        if status in (401, 403):
            raise GatewayRejected(f"{message} ({self.credential_hint})")
        if status == 400 and self.node.type == "halon6":
            raise GatewayRejected(f"{message} (check halon_version = {self.node.halon_version!r} against the node)")
        raise GatewayRejected(message)

    def redact(self, text: str) -> str:
        """Remove the node's credential, in every form a server may echo it, from text that may
        end up in logs, pages or traces."""
        for form in self._secret_forms:
            text = text.replace(form, REDACTED)
        return text

    def error_text(self, answer: Any, content: bytes, content_type: str) -> str:
        """The server's own words for an error (``error``/``message``/``detail``), redacted,
        then bounded (redacting after the cut could leave a secret's first half)."""
        if isinstance(answer, Mapping):
            text = ": ".join(str(answer[k]) for k in ("error", "message", "detail") if answer.get(k))
        elif content_type.startswith("text/plain"):
            text = content[: 4 * ERROR_DETAIL_LIMIT].decode("utf-8", "replace")
        else:
            text = ""
        return CONTROL_CHARS.sub(" ", self.redact(text)).strip()[:ERROR_DETAIL_LIMIT]

    # -- tracing (check-gateway --trace) ----------------------------------------------------

    def _emit(self, line: str) -> None:
        if self.trace is not None:
            self.trace(self.redact(line))

    def _trace_request(self, method: str, target: str, data: bytes | None) -> None:
        if self.trace is None:
            return
        headers = dict(self._session.headers)
        if method == "POST":
            headers["Content-Type"] = JSON_CONTENT_TYPE
        if self._session.auth:
            headers["Authorization"] = "Basic " + REDACTED
        if API_KEY_HEADER in headers:
            headers[API_KEY_HEADER] = REDACTED
        self._emit(f"-> {method} {self.base}{target}")
        for name in ("Authorization", API_KEY_HEADER, "Content-Type"):
            if name in headers:
                self._emit(f"   {name}: {headers[name]!s}")
        if data is not None:
            self._emit("   " + json.dumps(json.loads(data), indent=2).replace("\n", "\n   "))

    def _trace_response(self, status: int, content_type: str, answer: Any, content: bytes) -> None:
        if self.trace is None:
            return
        self._emit(f"<- HTTP {status} {content_type}")
        if answer is NOT_JSON:
            shown = CONTROL_CHARS.sub(" ", content[: 4 * ERROR_DETAIL_LIMIT].decode("utf-8", "replace"))
        else:
            shown = json.dumps(_abbreviated(answer), indent=2, ensure_ascii=False)
        self._emit("   " + shown.replace("\n", "\n   "))


def _abbreviated(answer: Any) -> Any:
    """A file read's base64 ``data`` cut short for the trace: the shape matters, not a page of
    someone's mail."""
    data = answer.get("data") if isinstance(answer, dict) else None
    if isinstance(data, str) and len(data) > TRACE_DATA_LIMIT:
        return {**answer, "data": f"{data[:TRACE_DATA_LIMIT]}... ({len(data)} characters)"}
    return answer


def _decode(content: bytes) -> Any:
    """The JSON value of an answer, or NOT_JSON (also for nesting too deep to parse)."""
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        return NOT_JSON


def _secret_forms(node: NodeSettings) -> list[str]:
    """The credential as sent and as a server might echo it: plain, JSON-escaped, and the
    Basic header's base64 (longest first, so no form is left half-replaced)."""
    secret = node.secret
    if not secret:
        return []
    forms = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    if node.type != "halon6":
        forms.add(base64.b64encode(f"{node.username}:{secret}".encode("latin-1", "replace")).decode("ascii"))
    return sorted(forms, key=len, reverse=True)


def describe(exc: BaseException) -> str:
    """A short, operator-readable reason for a failed request."""
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS verification failed (set ca_file or check the certificate)"
    return f"{type(exc).__name__}: {exc}"[:ERROR_DETAIL_LIMIT]
