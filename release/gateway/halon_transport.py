"""One Halon node's HTTP API: authentication, the command envelope, errors and tracing.

Both generations take ``POST {api_url}/api/protobuf`` with ``{"command", "program",
"payload"}`` (shared/halon-api.md). The 5.x VM authenticates with HTTP Basic; 6.x's
``halon-api`` with ``X-API-Key`` and wants a ``version`` envelope. Everything above this
module is the same for both.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

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
        what = f"halon node {self.node.name}: command {command}"
        data = json.dumps(body).encode("utf-8")
        self._trace_request(data)
        timeout = self.node.timeout_seconds
        deadline = time.monotonic() + timeout
        try:
            with self._session.post(
                self.base + PROTOBUF_PATH,
                data=data,
                headers={"Content-Type": JSON_CONTENT_TYPE},
                timeout=timeout,
                verify=self._verify,
                allow_redirects=False,  # a redirect means a wrong api_url; never replay the body
                stream=True,  # read below against one deadline: the timeout alone is per read
            ) as response:
                content = read_bounded(response, deadline, MAX_ANSWER_BYTES)
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
            raise GatewayRejected(f"{message} (no Halon API at {self.base}{PROTOBUF_PATH}? check api_url)")
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

    def _trace_request(self, data: bytes) -> None:
        if self.trace is None:
            return
        headers = {**self._session.headers, "Content-Type": JSON_CONTENT_TYPE}
        if self._session.auth:
            headers["Authorization"] = "Basic " + REDACTED
        if API_KEY_HEADER in headers:
            headers[API_KEY_HEADER] = REDACTED
        self._emit(f"-> POST {self.base}{PROTOBUF_PATH}")
        for name in ("Authorization", API_KEY_HEADER, "Content-Type"):
            if name in headers:
                self._emit(f"   {name}: {headers[name]!s}")
        self._emit("   " + json.dumps(json.loads(data), indent=2).replace("\n", "\n   "))

    def _trace_response(self, status: int, content_type: str, answer: Any, content: bytes) -> None:
        if self.trace is None:
            return
        self._emit(f"<- HTTP {status} {content_type}")
        if answer is NOT_JSON:
            shown = CONTROL_CHARS.sub(" ", content[: 4 * ERROR_DETAIL_LIMIT].decode("utf-8", "replace"))
        else:
            shown = json.dumps(answer, indent=2, ensure_ascii=False)
        self._emit("   " + shown.replace("\n", "\n   "))


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
