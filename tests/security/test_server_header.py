"""The ``Server`` header names no versions, in any mode: demo mode (werkzeug's server, which
said "Werkzeug/3.x Python/3.11.x"), its gateway simulator, and `python app.py` with a
configuration (gunicorn, which says "gunicorn" and cannot be told otherwise: no setting)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import requests

from release.devtools.demo import DemoRuntime
from release.devtools.mailcapture import CaptureServer, free_port
from release.devtools.simulator import SimulatorServer

ROOT = Path(__file__).resolve().parents[2]
VERSION = re.compile(r"\d|python|werkzeug", re.IGNORECASE)


def assert_no_versions(response: requests.Response) -> None:
    servers = [value for name, value in response.raw.headers.items() if name.lower() == "server"]
    assert len(servers) <= 1, servers
    assert not any(VERSION.search(value) for value in servers), servers


def test_demo_mode_names_no_versions(demo: DemoRuntime) -> None:
    for path in ("/demo/", "/healthz", "/no/such/page", "/static/css/app.css"):
        assert_no_versions(requests.get(f"{demo.url}{path}", timeout=10))
    assert_no_versions(requests.get(f"{demo.simulator.url}/", timeout=10))


def test_single_process_mode_names_no_versions(
    tmp_path: Path, simulator: SimulatorServer, smtp_server: CaptureServer
) -> None:
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(f"""
[app]
public_url = "http://127.0.0.1:{port}"
secret_key = "server-header-secret-0123456789abcdef"
[database]
url = "sqlite:///{tmp_path / "release.sqlite3"}"
[links]
keys = ["server-header-link-key-0123456789"]
[captcha]
provider = "altcha"
[smtp]
host = "127.0.0.1"
port = {smtp_server.port}
security = "none"
sender = "Release <release@example.test>"
[[nodes]]
name = "mx1"
api_url = "{simulator.url}"
username = "release"
password = "sim-password-0123"
""")
    env = {**os.environ, "RELEASE_CONFIG": str(config), "RELEASE_BIND": f"127.0.0.1:{port}", "PYTHONPATH": str(ROOT)}
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except requests.RequestException:
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.1)
        assert_no_versions(response)
        assert response.headers["Server"] == "gunicorn"
        assert_no_versions(requests.get(f"http://127.0.0.1:{port}/no/such/page", timeout=10))
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
