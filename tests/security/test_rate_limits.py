"""Rate limits through the real app: report POSTs per IP and per message, ALTCHA
challenges per IP, the admin-login decorator, Redis shared storage, Redis down."""

from __future__ import annotations

import logging
import secrets
import socket
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from release.config import settings_from_mapping
from release.db.models import Report
from release.web import branding, errors, i18n, limits
from tests.support.stack import Stack, StackFactory
from tests.support.visitor import csrf_token, report_path, submit_report


def reports(stack: Stack) -> int:
    with stack.services.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(Report)) or 0)


def client_from(stack: Stack, ip: str) -> FlaskClient:
    client = stack.new_client()
    client.environ_base["REMOTE_ADDR"] = ip
    return client


def random_ip() -> str:
    """A test-net address nobody else's run uses (the Redis counters outlive a test)."""
    return f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{1 + secrets.randbelow(254)}"


def assert_friendly_429(response: TestResponse, *, max_wait: int, our_headers: bool = True) -> int:
    assert response.status_code == 429, response.text
    assert response.mimetype == "text/html"
    assert "Too many requests" in response.text and "Please try again in about" in response.text
    assert "Traceback" not in response.text
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= max_wait
    if our_headers:  # the 429 page is one of ours: security headers too
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    return retry_after


def test_report_posts_per_ip(make_stack: StackFactory) -> None:
    stack = make_stack(limits={"reports_per_ip_per_hour": 3})
    client = client_from(stack, "203.0.113.5")
    for i in range(3):
        tx = stack.sim.add_message("a@partner.example", [f"r{i}@example.com"], "Hi")
        assert submit_report(client, stack, report_path(stack, tx)).status_code == 303
    tx = stack.sim.add_message("a@partner.example", ["r9@example.com"], "Hi")
    response = submit_report(client, stack, report_path(stack, tx))
    retry_after = assert_friendly_429(response, max_wait=3600)
    print(f"4th report POST from one IP: 429, Retry-After {retry_after}s")
    assert "Too many reports were sent from your network address" in response.text
    assert reports(stack) == 3  # the fourth was not stored
    assert stack.client.get(report_path(stack, tx)).status_code == 200  # showing the form is not limited
    # Another address is not affected.
    assert submit_report(client_from(stack, "203.0.113.6"), stack, report_path(stack, tx)).status_code == 303
    assert reports(stack) == 4


def test_report_posts_per_message(make_stack: StackFactory) -> None:
    stack = make_stack(limits={"reports_per_message_per_hour": 2, "reports_per_ip_per_hour": 100})
    tx = stack.sim.add_message("a@partner.example", ["r@example.com"], "Hi")
    path = report_path(stack, tx)
    # A CAPTCHA farm cycling addresses on one message: failed attempts count too.
    for i in range(2):
        failed = submit_report(client_from(stack, f"198.51.100.{i + 1}"), stack, path, solve=False)
        assert failed.status_code == 400
    blocked = submit_report(client_from(stack, "198.51.100.9"), stack, path)  # even a solved one
    assert_friendly_429(blocked, max_wait=3600)
    assert "This message was submitted too many times" in blocked.text
    assert reports(stack) == 0
    other = stack.sim.add_message("a@partner.example", ["r@example.com"], "Other")
    assert submit_report(client_from(stack, "198.51.100.9"), stack, report_path(stack, other)).status_code == 303


def test_altcha_challenges_per_ip(make_stack: StackFactory) -> None:
    stack = make_stack()
    client = client_from(stack, "192.0.2.77")
    codes = [client.get("/captcha/altcha-challenge").status_code for _ in range(limits.CHALLENGES_PER_IP_PER_MINUTE)]
    assert codes == [200] * limits.CHALLENGES_PER_IP_PER_MINUTE
    over = client.get("/captcha/altcha-challenge", headers={"Accept": "text/html"})
    assert_friendly_429(over, max_wait=60)
    assert client_from(stack, "192.0.2.78").get("/captcha/altcha-challenge").status_code == 200


def _login_app(settings_sections: dict[str, Any]) -> Flask:
    """A minimal app with a login view decorated like the admin console's will be."""
    from release.paths import STATIC, TEMPLATES

    settings = settings_from_mapping({"app": {"demo": True, "secret_key": "x" * 32}, **settings_sections})
    app = Flask(__name__, template_folder=str(TEMPLATES), static_folder=str(STATIC))

    @app.route("/login", methods=["GET", "POST"])
    @limits.login_limit
    def login() -> str:
        return "login page"

    @limits.login_limit  # above the route decorator works too
    @app.post("/login2")
    def login2() -> str:
        return "ok"

    errors.register(app)
    i18n.register(app, settings)  # the error page is translated and branded like every page
    branding.register(app, settings)
    limits.init_app(app, settings)
    return app


def test_login_limit_decorator_counts_posts_per_ip() -> None:
    app = _login_app({"limits": {"logins_per_ip_per_minute": 3}})
    client = app.test_client()
    assert [client.post("/login").status_code for _ in range(3)] == [200, 200, 200]
    assert_friendly_429(client.post("/login"), max_wait=60, our_headers=False)
    assert client.get("/login").status_code == 200  # showing the form is not an attempt
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "192.0.2.1"
    assert other.post("/login").status_code == 200
    assert [client.post("/login2").status_code for _ in range(4)] == [200, 200, 200, 429]


def test_redis_storage_is_shared_by_two_app_instances(make_stack: StackFactory, redis_url: str) -> None:
    sections = {"limits": {"storage_url": redis_url, "reports_per_ip_per_hour": 2}}
    web1, web2 = make_stack(**sections), make_stack(**sections)  # two web processes, one database
    ip = random_ip()
    txs = [web1.sim.add_message("a@partner.example", [f"r{i}@example.com"], "Hi") for i in range(4)]
    assert submit_report(client_from(web1, ip), web1, report_path(web1, txs[0])).status_code == 303
    assert submit_report(client_from(web2, ip), web2, report_path(web2, txs[1])).status_code == 303
    # Each instance has seen one POST, together two: both refuse the third.
    assert_friendly_429(submit_report(client_from(web1, ip), web1, report_path(web1, txs[2])), max_wait=3600)
    assert_friendly_429(submit_report(client_from(web2, ip), web2, report_path(web2, txs[3])), max_wait=3600)
    assert reports(web1) == 2
    # The counters really are in Redis.
    client = redis.Redis.from_url(redis_url)
    keys = [k for k in client.scan_iter(match=f"*{ip}*")]
    assert keys, "no rate-limit keys for this address in Redis"
    client.delete(*keys)


def test_redis_down_falls_back_to_memory_and_logs_a_warning(
    make_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    stack = make_stack(limits={"storage_url": f"redis://127.0.0.1:{port}/0", "reports_per_ip_per_hour": 2})
    client = client_from(stack, "203.0.113.50")
    caplog.set_level(logging.WARNING, logger="flask-limiter")
    txs = [stack.sim.add_message("a@partner.example", [f"r{i}@example.com"], "Hi") for i in range(3)]
    # Redis is down: the request is not failed (no 500)...
    assert submit_report(client, stack, report_path(stack, txs[0])).status_code == 303
    assert any("falling back to in-memory" in r.getMessage() for r in caplog.records), caplog.text
    assert submit_report(client, stack, report_path(stack, txs[1])).status_code == 303
    # ...and the limit still holds, counted in this process until Redis is back.
    assert_friendly_429(submit_report(client, stack, report_path(stack, txs[2])), max_wait=3600)
    assert reports(stack) == 2


def test_rejected_csrf_is_refused_before_counting(make_stack: StackFactory) -> None:
    """A POST without a valid form never reaches the view (CSRF first), so it cannot be used
    to burn another sender's per-message allowance cheaply without a session either."""
    stack = make_stack(limits={"reports_per_message_per_hour": 1})
    tx = stack.sim.add_message("a@partner.example", ["r@example.com"], "Hi")
    path = report_path(stack, tx)
    for _ in range(3):
        assert stack.new_client().post(path, data={"comment": "x"}).status_code == 400
    client = stack.new_client()
    page = client.get(path)
    assert csrf_token(page.text)
    assert submit_report(client, stack, path).status_code == 303
