"""Security headers on every response: pages, JSON, error pages (400/404/405/410/429) and
static files."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

from werkzeug.test import TestResponse

from release.core import links
from release.core.reports import Submission
from tests.support.stack import Stack, StackFactory
from tests.support.visitor import report_path

HCAPTCHA = {
    "provider": "hcaptcha",
    "site_key": "10000000-ffff-ffff-ffff-000000000001",
    "secret": "0x0000000000000000000000000000000000000000",
}


def csp(response: TestResponse) -> dict[str, list[str]]:
    header = response.headers.get("Content-Security-Policy", "")
    assert header, "no Content-Security-Policy"
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def sample(stack: Stack) -> dict[str, TestResponse]:
    """One response of every kind the app gives."""
    settings = stack.services.settings
    reported = stack.sim.add_message("a@partner.example", ["alice@example.com"], "Hi")
    unreported = stack.sim.add_message("a@partner.example", ["bob@example.com"], "Hi")
    query = parse_qs(urlsplit(report_path(stack, reported)).query)
    link = links.verify(
        {k: v[0] for k, v in query.items()},
        keys=settings.links.keys,
        nodes=["mx1"],
        max_age_seconds=3600,
        now=time.time(),
    )
    with stack.services.db.session() as session:
        stack.services.steps.reports.submit(session, Submission(link, "hello", "192.0.2.1"))
    expired = urlsplit(
        links.build_report_url(settings.app.public_url, settings.links.keys[0], "mx1", unreported, 1_000_000)
    )
    client = stack.new_client()
    responses = {
        "index": client.get("/"),
        "healthz": client.get("/healthz"),
        "report form": client.get(report_path(stack, unreported)),
        "report status page": client.get(report_path(stack, reported)),
        "report status json": client.get(report_path(stack, reported).replace("/report?", "/report/status?")),
        "400 bad link": client.get("/report?n=mx1&m=x&t=1&s=00"),
        "400 csrf": client.post(report_path(stack, unreported), data={"comment": "x"}),
        "410 expired link": client.get(f"{expired.path}?{expired.query}"),
        "404 token": client.get("/release/" + "A" * 43),
        "404 page": client.get("/no/such/page"),
        "404 json": client.get("/release/" + "A" * 43 + "/status"),
        "405": client.put("/report"),
        "static css": client.get("/static/css/app.css"),
        "static js": client.get("/static/js/status.js"),
        "static 404": client.get("/static/nope.js"),
    }
    if "admin.login" in stack.app.view_functions:
        responses["admin login"] = client.get("/admin/login")
    for _ in range(61):
        last = client.get("/captcha/altcha-challenge")
    responses["429"] = last
    return responses


def test_security_headers_everywhere(make_stack: StackFactory) -> None:
    stack = make_stack(captcha=HCAPTCHA)
    responses = sample(stack)
    expected = {
        "index": 200, "healthz": 200, "report form": 200, "report status page": 200, "report status json": 200,
        "400 bad link": 400, "400 csrf": 400, "410 expired link": 410, "404 token": 404, "404 page": 404,
        "404 json": 404, "405": 405, "static css": 200, "static js": 200, "static 404": 404, "429": 429,
    }  # fmt: skip
    assert {name: responses[name].status_code for name in expected} == expected
    for name, response in responses.items():
        headers = response.headers
        policy = csp(response)
        assert "'unsafe-inline'" not in policy["script-src"] and "'unsafe-eval'" not in policy["script-src"], name
        assert policy["frame-ancestors"] == ["'none'"], name
        assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'none'"], name
        assert headers.get("X-Content-Type-Options") == "nosniff", name
        # same-origin, not no-referrer: flask-wtf's CSRF check on HTTPS needs same-origin referrers.
        assert headers.get("Referrer-Policy") == "same-origin", name
        assert headers.get("X-Frame-Options") == "DENY", name
        assert headers.get("Strict-Transport-Security", "").startswith("max-age="), name
        captcha_hosts = [v for values in policy.values() for v in values if "hcaptcha.com" in v]
        if name == "report form":
            assert "https://hcaptcha.com" in policy["script-src"] and "https://hcaptcha.com" in policy["frame-src"]
        else:
            assert not captcha_hosts, (name, captcha_hosts)
    for name in ("report form", "report status page", "report status json", "404 token"):
        assert "no-store" in responses[name].headers.get("Cache-Control", ""), name


def test_no_hsts_over_plain_http(make_stack: StackFactory) -> None:
    stack = make_stack(app={"public_url": "http://release.example.test"})
    client = stack.app.test_client()
    for path in ("/", "/no/such/page", "/static/css/app.css"):
        response = client.get(path)
        assert "Strict-Transport-Security" not in response.headers, path
        assert response.headers.get("X-Content-Type-Options") == "nosniff"
