"""check-config does not put a secret on the operator's terminal (or a CI log),
and one line per check must stay one line, whatever a siteverify URL answers."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

from release.captcha.turnstile import Turnstile
from release.config import CaptchaSettings
from release.db.engine import Database
from release.ops.check_config import captcha_lines, database_line, limits_line

SECRET = "S3cret-9f2c1d7e5b8a4c3d"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def siteverify() -> Iterator[Any]:
    """A siteverify URL answering ``answer`` (JSON)."""
    servers = []

    def start(answer: dict[str, Any]) -> str:
        def app(environ: Any, start_response: Any) -> Any:
            return Response(json.dumps(answer), mimetype="application/json")(environ, start_response)

        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/siteverify"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_redis_password_in_the_netloc_is_masked() -> None:
    text = limits_line(f"redis://:{SECRET}@127.0.0.1:{closed_port()}/0").render()
    assert SECRET not in text and ":***@" in text


def test_redis_password_in_the_query_string_is_not_printed() -> None:
    # redis-py (and limits) take ?password=... as the AUTH password: a documented URL form.
    text = limits_line(f"redis://127.0.0.1:{closed_port()}/0?password={SECRET}").render()
    assert SECRET not in text, text


def test_database_password_in_the_query_string_is_not_printed() -> None:
    # SQLAlchemy passes query parameters to psycopg as connection arguments (password=...).
    db = Database(f"postgresql+psycopg://release@127.0.0.1:{closed_port()}/release?password={SECRET}")
    try:
        text = database_line(SimpleNamespace(db=db)).render()  # type: ignore[arg-type]
    finally:
        db.dispose()
    assert SECRET not in text, text


def test_a_siteverify_answer_echoing_the_secret_is_not_printed(siteverify: Any) -> None:
    url = siteverify({"success": False, "error-codes": [f"bad secret {SECRET}"]})
    captcha = Turnstile(CaptchaSettings(provider="turnstile", site_key="k" * 24, secret=SECRET, verify_url=url))
    reason = captcha.probe().reason
    assert SECRET not in reason, reason


def test_a_siteverify_answer_cannot_add_lines_or_terminal_escapes(siteverify: Any) -> None:
    url = siteverify({"success": False, "error-codes": ["x\nnode mx1     ok   3 ms authenticated\x1b[2K"]})
    captcha = Turnstile(CaptchaSettings(provider="turnstile", site_key="k" * 24, secret=SECRET, verify_url=url))
    reason = captcha.probe().reason
    assert "\n" not in reason and "\x1b" not in reason, repr(reason)


def test_an_http_verify_url_is_warned_like_an_http_node() -> None:
    # The probe (and every real verification) POSTs the secret to verify_url; http:// sends it
    # in clear. check-config warns for an http:// node URL, so an operator expects the same here
    # (a stand-in on this machine, 127.0.0.1, is not warned: nothing leaves the host).
    settings = CaptchaSettings(
        provider="turnstile",
        site_key="0x4AAAAAAAexample-site-key",
        secret=SECRET,
        verify_url="http://192.0.2.1/siteverify",  # TEST-NET: not this host, never answers
        timeout_seconds=0.3,
    )
    svc = SimpleNamespace(
        captcha=Turnstile(settings), settings=SimpleNamespace(captcha=settings, app=SimpleNamespace(demo=False))
    )
    lines = [line.render() for line in captcha_lines(svc)]  # type: ignore[arg-type]
    assert any("WARN" in line and "http://" in line for line in lines), lines


def test_a_database_failure_is_one_line() -> None:
    # "one line per part": psycopg's message carries a newline, a tab and SQLAlchemy's
    # "Background on this error" link, so the FAIL line spans three lines.
    db = Database(f"postgresql+psycopg://release:{SECRET}@127.0.0.1:{closed_port()}/release")
    try:
        text = database_line(SimpleNamespace(db=db)).render()  # type: ignore[arg-type]
    finally:
        db.dispose()
    assert SECRET not in text
    assert "\n" not in text, text
