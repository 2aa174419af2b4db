"""The node's credential never reaches errors, health details or --trace output: not cut in
half by truncation, not JSON-escaped, not as the base64 of a Basic header a node echoes."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from release.config import ConfigError, NodeSettings
from release.config.validation import _validate_nodes
from release.gateway import GatewayError, HalonGateway

KEY = "Hostile-Test-Api-Key-0123456789"


class Echo:
    """A node answering every POST with ``make(headers)`` as (status, body bytes, content type)."""

    def __init__(self, make: Callable[[dict[str, str]], tuple[int, bytes, str]]) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, data, ctype = make(dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def echo_factory() -> Iterator[Callable[..., Echo]]:
    started: list[Echo] = []

    def start(make: Callable[[dict[str, str]], tuple[int, bytes, str]]) -> Echo:
        started.append(Echo(make))
        return started[-1]

    yield start
    for e in started:
        e.close()


def halon6(url: str, key: str = KEY) -> NodeSettings:
    return NodeSettings(name="mx1", api_url=url, type="halon6", api_key=key, halon_version="6.10", timeout_seconds=2)


def halon5(url: str, password: str) -> NodeSettings:
    return NodeSettings(name="mx1", api_url=url, username="release", password=password, timeout_seconds=2)


# -- a trailing newline on api_key (a secret file / Kubernetes secret) -------------------------


def test_api_key_with_trailing_newline_is_refused_by_config_or_never_shown() -> None:
    """RELEASE_NODES__MX1__API_KEY filled from a file that ends in a newline: check-config
    accepts it, and every call then fails with requests' InvalidHeader message, which quotes
    the header value -- the key -- and redact() (exact match on 'key\\n') misses the repr."""
    node = halon6("http://127.0.0.1:9", KEY + "\n")
    try:
        _validate_nodes((node,), demo=False)
    except ConfigError as exc:
        assert "api_key" in str(exc) and KEY not in str(exc)
        return
    with HalonGateway(node) as gw:
        detail = gw.health().detail  # what /admin/nodes, check-config and check-gateway show
        with pytest.raises(GatewayError) as caught:  # what the worker logs and stores on the job
            gw.find("T1")
    assert KEY not in detail, detail
    assert KEY not in str(caught.value), caught.value


@pytest.mark.parametrize("secret", ["Api-Key-\u20ac-0123456789abc", "p\u00e4ssw\u00f6rd-\u20ac-0123456789"])
def test_non_latin1_credential_is_named_by_config(secret: str) -> None:
    """A credential HTTP headers cannot carry passes check-config; every call then raises a
    bare UnicodeEncodeError (not a GatewayError) that names no config key."""
    node = halon6("http://127.0.0.1:9", secret) if "Key" in secret else halon5("http://127.0.0.1:9", secret)
    try:
        _validate_nodes((node,), demo=False)
    except ConfigError:
        return
    with HalonGateway(node) as gw:
        with pytest.raises(GatewayError):
            gw.find("T1")


# -- the node echoing the credential ---------------------------------------------------------------


def test_error_echo_cut_at_300_chars_leaks_the_key_prefix(echo_factory: Callable[..., Echo]) -> None:
    """error_text() truncates to 300 characters *before* redact(): a key straddling the cut
    survives as a prefix ('Hostile-Test-Ap...')."""
    body = json.dumps({"error": "x" * 285 + " bad key " + KEY}).encode()
    node = echo_factory(lambda h: (401, body, "application/json"))
    with HalonGateway(halon6(node.url)) as gw, pytest.raises(GatewayError) as caught:
        gw.find("T1")
    assert KEY[:5] not in str(caught.value).split("bad key")[-1], str(caught.value)[-60:]


@pytest.mark.parametrize("password", ['pa"ss\\word-0123456789', "l\u00f6senord-0123456789-x"])
def test_trace_redacts_a_password_the_node_echoes(echo_factory: Callable[..., Echo], password: str) -> None:
    """--trace prints json.dumps(answer): a password with a quote, backslash or non-ASCII
    letter is printed escaped, and redact() looks only for the raw form."""
    body = json.dumps({"error": "denied", "detail": f"user release password {password}"}).encode()
    node = echo_factory(lambda h: (401, body, "application/json"))
    lines: list[str] = []
    with HalonGateway(halon5(node.url, password), trace=lines.append) as gw, pytest.raises(GatewayError):
        gw.find("T1")
    shown = "\n".join(lines)
    escaped = json.dumps(password)[1:-1]
    assert password not in shown
    assert escaped not in shown, [ln for ln in lines if "password" in ln]


def test_trace_of_a_node_echoing_the_basic_header(echo_factory: Callable[..., Echo]) -> None:
    """A node (or a proxy in front of it) echoing our Authorization header: the base64 form
    of user:password is not redacted anywhere."""
    password = "Echoed-Password-0123456789"

    def make(headers: dict[str, str]) -> tuple[int, bytes, str]:
        return (
            401,
            json.dumps({"error": "denied", "detail": headers.get("Authorization", "")}).encode(),
            "application/json",
        )

    node = echo_factory(make)
    lines: list[str] = []
    with HalonGateway(halon5(node.url, password), trace=lines.append) as gw, pytest.raises(GatewayError) as caught:
        gw.find("T1")
    encoded = base64.b64encode(f"release:{password}".encode()).decode()
    assert encoded not in "\n".join(lines) and encoded not in str(caught.value)


def test_repr_and_errors_never_carry_the_key(echo_factory: Callable[..., Echo]) -> None:
    """Held up: repr of settings/gateway, a 401 naming the key, a 500 naming it."""
    body = json.dumps({"error": f"unknown key {KEY}"}).encode()
    node = echo_factory(lambda h: (500, body, "application/json"))
    settings = halon6(node.url)
    assert KEY not in repr(settings)
    lines: list[str] = []
    with HalonGateway(settings, trace=lines.append) as gw:
        assert KEY not in repr(gw)
        with pytest.raises(GatewayError) as caught:
            gw.find("T1")
        assert KEY not in gw.health().detail
    assert KEY not in str(caught.value) and KEY not in "\n".join(lines)
