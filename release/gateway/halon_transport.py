"""One Halon node's HTTP API: authentication, the command envelope, errors and tracing.

Both generations take ``POST {api_url}/api/protobuf`` with ``{"command", "program",
"payload"}`` (shared/halon-api.md). The 5.x VM authenticates with HTTP Basic; 6.x's
``halon-api`` with ``X-API-Key`` and wants a ``version`` envelope. Everything above this
module is the same for both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import requests

from release.config import NodeSettings
from release.gateway.base import GatewayError, GatewayRejected

PROTOBUF_PATH = "/api/protobuf"
PROGRAM = "smtpd"
API_KEY_HEADER = "X-API-Key"
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
POOL_SIZE = 64
USER_AGENT = "sender-fp-release"
ERROR_DETAIL_LIMIT = 300
REDACTED = "***"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")

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
        try:
            response = self._session.post(
                self.base + PROTOBUF_PATH,
                data=data,
                headers={"Content-Type": JSON_CONTENT_TYPE},
                timeout=self.node.timeout_seconds,
                verify=self._verify,
                allow_redirects=False,  # a redirect means a wrong api_url; never replay the body
            )
        except requests.Timeout:
            self._emit(f"<- no answer within {self.node.timeout_seconds:g}s")
            raise GatewayError(f"{what}: no answer within {self.node.timeout_seconds:g}s") from None
        except requests.RequestException as exc:
            detail = self.redact(describe(exc))
            self._emit(f"<- request failed: {detail}")
            raise GatewayError(f"{what}: request failed: {detail}") from None
        self._trace_response(response)
        status = response.status_code
        if status == 200:
            try:
                answer = response.json()
            except ValueError:
                raise GatewayError(f"{what}: HTTP 200 but the body is not JSON") from None
            if not isinstance(answer, dict):
                raise GatewayError(f"{what}: HTTP 200 but the body is not a JSON object")
            return answer
        reason = self.redact(error_text(response))
        message = f"{what}: HTTP {status}" + (f": {reason}" if reason else "")
        if status in (408, 429) or status >= 500:
            raise GatewayError(message)
        if status == 404 and _is_json(response):
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
        """Remove the node's credential from text that may end up in logs, pages or traces."""
        secret = self.node.secret
        return text.replace(secret, REDACTED) if secret else text

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

    def _trace_response(self, response: requests.Response) -> None:
        if self.trace is None:
            return
        self._emit(f"<- HTTP {response.status_code} {response.headers.get('Content-Type', '')}")
        try:
            shown = json.dumps(response.json(), indent=2)
        except ValueError:
            shown = _CONTROL.sub(" ", response.text)[:ERROR_DETAIL_LIMIT]
        self._emit("   " + shown.replace("\n", "\n   "))


def _is_json(response: requests.Response) -> bool:
    try:
        response.json()
    except ValueError:
        return False
    return True


def error_text(response: requests.Response) -> str:
    """The server's own words for an error (``error``/``message``/``detail``), bounded."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        parts = [str(body[k]) for k in ("error", "message", "detail") if body.get(k)]
        text = ": ".join(parts)
    else:
        content_type = response.headers.get("Content-Type", "")
        text = response.text if content_type.startswith("text/plain") else ""
    return _CONTROL.sub(" ", text).strip()[:ERROR_DETAIL_LIMIT]


def describe(exc: BaseException) -> str:
    """A short, operator-readable reason for a failed request."""
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS verification failed (set ca_file or check the certificate)"
    return f"{type(exc).__name__}: {exc}"[:ERROR_DETAIL_LIMIT]
