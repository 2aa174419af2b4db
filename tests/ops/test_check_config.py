"""check-config's further lines against real parts: Redis (and a closed port), a local HTTP
server standing in for a siteverify URL (up, refusing the secret, down), a node over http and
one over https, and the public URL's scheme."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from release import create_app
from release.config import settings_from_mapping
from release.devtools.mailcapture import CaptureServer
from release.devtools.simulator import SimulatorServer
from tests.support.config import make_config
from tests.support.rspamd import CONTROLLER_PASSWORD, Controller, rspamd_node
from tests.support.tls import needs_openssl, self_signed

SECRET = "0123456789abcdef0123456789abcdef"
SITE_KEY = "0x4AAAAAAAexample-site-key"


def check(
    tmp_path: Path, simulator: SimulatorServer, smtp: CaptureServer, nodes: list[Any] | None = None, **sections: Any
) -> Result:
    """check-config on a production-shaped config with ``sections`` merged in."""
    config = make_config(f"sqlite:///{tmp_path / 'check.sqlite3'}", simulator, smtp.port, **sections)
    config["nodes"] = nodes or config["nodes"]
    app = create_app(settings_from_mapping(config))
    try:
        return app.test_cli_runner().invoke(args=["check-config"])
    finally:
        app.extensions["release"].mailer.close()
        app.extensions["release"].db.dispose()


def line(result: Result, label: str) -> list[str]:
    """The output lines of one check."""
    return [row for row in result.output.splitlines() if row.startswith(label.ljust(12) + " ")]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Siteverify:
    """A local siteverify stand-in: answers ``answer`` and records each form it was sent."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.forms: list[dict[str, str]] = []

    def __call__(self, environ: Any, start_response: Any) -> Any:
        self.forms.append(Request(environ).form.to_dict())
        return Response(json.dumps(self.answer), mimetype="application/json")(environ, start_response)


@pytest.fixture
def serve() -> Iterator[Any]:
    """Serve a WSGI app on 127.0.0.1 (optionally over TLS); returns its base URL."""
    servers: list[tuple[BaseWSGIServer, threading.Thread]] = []

    def start(app: Any, context: ssl.SSLContext | None = None) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=context)
        thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"{'https' if context else 'http'}://127.0.0.1:{server.server_port}"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_memory_limits_altcha_and_https_public_url_are_ok(
    tmp_path: Path, simulator: SimulatorServer, smtp_server: CaptureServer
) -> None:
    result = check(tmp_path, simulator, smtp_server)
    assert result.exit_code == 0, result.output
    assert line(result, "public url") == ["public url   ok   https://release.example.test"]
    assert "fine for one process, use redis for several" in line(result, "rate limits")[0]
    assert line(result, "captcha") == ["captcha      ok   altcha: self-hosted, no account or keys needed"]


def test_redis_answers_ping(
    tmp_path: Path, simulator: SimulatorServer, smtp_server: CaptureServer, redis_url: str
) -> None:
    result = check(tmp_path, simulator, smtp_server, limits={"storage_url": redis_url})
    assert result.exit_code == 0, result.output
    assert line(result, "rate limits") == [f"rate limits  ok   {redis_url} answers PING"]


def test_unreachable_redis_fails_and_says_what_to_do(
    tmp_path: Path, simulator: SimulatorServer, smtp_server: CaptureServer
) -> None:
    url = f"redis://:hunter2-redis-pass@127.0.0.1:{closed_port()}/0"
    result = check(tmp_path, simulator, smtp_server, limits={"storage_url": url})
    assert result.exit_code == 1
    [row] = line(result, "rate limits")
    assert row.startswith("rate limits  FAIL redis://:***@127.0.0.1:") and "ConnectionError" in row
    assert "start Redis or correct [limits] storage_url" in row
    assert "hunter2-redis-pass" not in result.output


@pytest.mark.parametrize("provider", ["recaptcha", "hcaptcha", "turnstile"])
def test_siteverify_url_reached_without_a_token(
    tmp_path: Path, simulator: SimulatorServer, smtp_server: CaptureServer, serve: Any, provider: str
) -> None:
    stand_in = Siteverify({"success": False, "error-codes": ["missing-input-response"]})
    url = serve(stand_in) + "/siteverify"
    captcha = {"provider": provider, "site_key": SITE_KEY, "secret": SECRET, "verify_url": url}
    result = check(tmp_path, simulator, smtp_server, captcha=captcha)
    assert f"captcha      ok   {provider} {url}: answers (missing-input-response)" in result.output
    assert stand_in.forms == [{"secret": SECRET}]  # no token: nothing is verified or spent
    assert SECRET not in result.output


def test_siteverify_refusing_the_secret_fails(
    tmp_path: Path, simulator: SimulatorServer, smtp_server: CaptureServer, serve: Any
) -> None:
    url = serve(Siteverify({"success": False, "error-codes": ["invalid-input-secret"]})) + "/siteverify"
    captcha = {"provider": "turnstile", "site_key": SITE_KEY, "secret": SECRET, "verify_url": url}
    result = check(tmp_path, simulator, smtp_server, captcha=captcha)
    assert result.exit_code == 1
    [row] = line(result, "captcha")
    assert "FAIL" in row and "refused the secret: invalid-input-secret" in row
    assert "-> check [captcha] secret (RELEASE_CAPTCHA__SECRET)" in row


def test_siteverify_down_fails(tmp_path: Path, simulator: SimulatorServer, smtp_server: CaptureServer) -> None:
    url = f"http://127.0.0.1:{closed_port()}/siteverify"
    captcha = {"provider": "recaptcha", "site_key": "6L" + "a" * 38, "secret": SECRET, "verify_url": url}
    result = check(tmp_path, simulator, smtp_server, captcha=captcha)
    assert result.exit_code == 1
    [row] = line(result, "captcha")
    assert "FAIL" in row and "unreachable (ConnectionError)" in row and "-> check [captcha] verify_url" in row


def test_published_test_keys_fail_and_odd_shapes_warn(
    tmp_path: Path, simulator: SimulatorServer, smtp_server: CaptureServer, serve: Any
) -> None:
    url = serve(Siteverify({"success": False, "error-codes": ["missing-input-response"]})) + "/siteverify"
    turnstile = {"provider": "turnstile", "site_key": SITE_KEY, "verify_url": url}
    testing = check(tmp_path, simulator, smtp_server, captcha={**turnstile, "secret": "1x" + "0" * 31 + "AA"})
    assert testing.exit_code == 1
    assert "captcha.secret: a published test key" in line(testing, "captcha")[1]
    hcaptcha = {"provider": "hcaptcha", "site_key": "not-a-uuid", "secret": SECRET, "verify_url": url}
    odd = check(tmp_path, simulator, smtp_server, captcha=hcaptcha)
    assert odd.exit_code == 0, odd.output  # a WARN alone does not fail
    assert "captcha      WARN captcha.site_key is not a UUID, as hCaptcha site keys are" in odd.output


def test_http_node_warns_naming_the_key(tmp_path: Path, simulator: SimulatorServer, smtp_server: CaptureServer) -> None:
    result = check(tmp_path, simulator, smtp_server)
    assert result.exit_code == 0, result.output
    ok, warning = line(result, "node mx1")
    assert ok.startswith("node mx1     ok")
    assert warning.startswith("node mx1     WARN nodes[0].api_url is http://")
    assert "-> use the node's https:// listener in nodes[0].api_url" in warning


@needs_openssl
def test_https_node_has_no_warning(
    tmp_path: Path, simulator: SimulatorServer, smtp_server: CaptureServer, serve: Any
) -> None:
    cert, context = self_signed(tmp_path)
    url = serve(simulator.sim.app, context)
    node = {**make_config("", simulator, 0)["nodes"][0], "api_url": url, "ca_file": str(cert)}
    result = check(tmp_path, simulator, smtp_server, nodes=[node])
    assert result.exit_code == 0, result.output
    assert [row[:17] for row in line(result, "node mx1")] == ["node mx1     ok  "]


@pytest.mark.parametrize(
    ("public_url", "verdict", "code"),
    [("http://release.example.test", "FAIL", 1), ("http://127.0.0.1:8000", "WARN", 0)],
)
def test_plain_http_public_url(
    tmp_path: Path, simulator: SimulatorServer, smtp_server: CaptureServer, public_url: str, verdict: str, code: int
) -> None:
    result = check(tmp_path, simulator, smtp_server, app={"public_url": public_url})
    assert result.exit_code == code, result.output
    [row] = line(result, "public url")
    assert row.startswith(f"public url   {verdict} {public_url} is plain http")
    assert "-> serve the service behind TLS" in row


def test_rspamd_node_checks_its_relay_and_controller(
    tmp_path: Path, simulator: SimulatorServer, smtp_server: CaptureServer
) -> None:
    controller = Controller().start()
    try:
        node = rspamd_node(smtp_server.port, controller_url=controller.url, controller_password=CONTROLLER_PASSWORD)
        result = check(tmp_path, simulator, smtp_server, nodes=[node])
        assert result.exit_code == 0, result.output
        relay, learn = line(result, "node mx3")
        assert relay.startswith("node mx3     ok") and "answered NOOP with 250" in relay
        assert learn.startswith("node mx3     ok") and "answered /stat" in learn

        wrong = {**node, "controller_password": "wrong-password-0123", "relay_port": closed_port()}
        failed = check(tmp_path, simulator, smtp_server, nodes=[wrong])
        assert failed.exit_code == 1
        relay, learn = line(failed, "node mx3")
        assert relay.startswith("node mx3     FAIL") and "-> check nodes[0].relay_host" in relay
        assert learn.startswith("node mx3     FAIL") and "check controller_password" in learn
        assert "wrong-password-0123" not in failed.output
    finally:
        controller.stop()


def test_rspamd_relay_over_a_network_without_tls_warns(
    tmp_path: Path, simulator: SimulatorServer, smtp_server: CaptureServer
) -> None:
    node = {**rspamd_node(smtp_server.port), "relay_host": "192.0.2.10", "timeout_seconds": 0.5}
    result = check(tmp_path, simulator, smtp_server, nodes=[node])
    assert any("WARN nodes[0].relay_host is reached without TLS" in row for row in line(result, "node mx3"))


def test_rspamd_controller_over_http_to_another_host_warns(
    tmp_path: Path, simulator: SimulatorServer, smtp_server: CaptureServer
) -> None:
    node = {**rspamd_node(smtp_server.port), "controller_url": "http://192.0.2.11:11334",
            "controller_password": CONTROLLER_PASSWORD, "timeout_seconds": 0.5}  # fmt: skip
    result = check(tmp_path, simulator, smtp_server, nodes=[node])
    assert any("WARN nodes[0].controller_url is http:// to another host" in row for row in line(result, "node mx3"))
    assert CONTROLLER_PASSWORD not in result.output
