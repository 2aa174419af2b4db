"""reCAPTCHA, hCaptcha and Turnstile against a real local siteverify server."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from release.captcha import SITEVERIFY_PROVIDERS
from release.captcha.base import CaptchaResult
from release.captcha.siteverify import SiteverifyCaptcha
from release.config import CaptchaSettings

SECRET = "siteverify-secret-0123456789abcdef"


@dataclass
class FakeSiteverify:
    """A real HTTP server answering like a provider's siteverify; records what it was sent."""

    url: str = ""
    answer: Any = field(default_factory=lambda: {"success": True})
    status: int = 200
    raw: bytes | None = None
    delay: float = 0.0
    posts: list[dict[str, str]] = field(default_factory=list)

    def __call__(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        self.posts.append(request.form.to_dict())
        if self.delay:
            time.sleep(self.delay)
        body = self.raw if self.raw is not None else json.dumps(self.answer).encode()
        return Response(body, status=self.status, mimetype="application/json")(environ, start_response)


@pytest.fixture
def siteverify() -> Iterator[FakeSiteverify]:
    fake = FakeSiteverify()
    server = make_server("127.0.0.1", 0, fake, threaded=True)
    fake.url = f"http://127.0.0.1:{server.server_port}/siteverify"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    thread.join(timeout=5)


def siteverify_captcha(fake: FakeSiteverify, provider: str = "recaptcha", **overrides: Any) -> SiteverifyCaptcha:
    settings = CaptchaSettings(
        provider=provider, site_key="site-key-1", secret=SECRET, verify_url=fake.url, timeout_seconds=2.0
    )
    return SITEVERIFY_PROVIDERS[provider](dataclasses.replace(settings, **overrides))


@pytest.mark.parametrize(
    ("provider", "field_name"),
    [("recaptcha", "g-recaptcha-response"), ("hcaptcha", "h-captcha-response"), ("turnstile", "cf-turnstile-response")],
)
def test_success_posts_secret_response_and_remoteip(siteverify: FakeSiteverify, provider: str, field_name: str) -> None:
    captcha = siteverify_captcha(siteverify, provider)
    assert captcha.verify("token-abc", "203.0.113.7") == CaptchaResult(True)
    assert captcha.field_name == field_name
    assert len(siteverify.posts) == 1
    posted = siteverify.posts[0]
    assert posted["secret"] == SECRET
    assert posted["response"] == "token-abc"
    assert posted["remoteip"] == "203.0.113.7"


def test_hcaptcha_also_posts_sitekey(siteverify: FakeSiteverify) -> None:
    siteverify_captcha(siteverify, "hcaptcha").verify("token", None)
    assert siteverify.posts[0]["sitekey"] == "site-key-1"


def test_remoteip_omitted_when_unknown(siteverify: FakeSiteverify) -> None:
    assert siteverify_captcha(siteverify).verify("token", None).ok
    assert "remoteip" not in siteverify.posts[0]


def test_provider_rejection_carries_error_codes_not_secret(siteverify: FakeSiteverify) -> None:
    siteverify.answer = {"success": False, "error-codes": ["invalid-input-response", "timeout-or-duplicate"]}
    result = siteverify_captcha(siteverify).verify("token", "198.51.100.1")
    assert not result.ok
    assert "invalid-input-response" in result.reason and "timeout-or-duplicate" in result.reason
    assert SECRET not in result.reason


@pytest.mark.parametrize("answer", [{}, {"success": "true"}, {"success": 1}, ["success"], "success"])
def test_anything_but_literal_true_fails(siteverify: FakeSiteverify, answer: Any) -> None:
    siteverify.answer = answer
    assert not siteverify_captcha(siteverify).verify("token", None).ok


@pytest.mark.parametrize(
    ("score", "ok"), [(0.9, True), (0.5, True), (0.49, False), (0.0, False), ("0.9", False), (True, False)]
)
def test_recaptcha_v3_score_threshold(siteverify: FakeSiteverify, score: Any, ok: bool) -> None:
    siteverify.answer = {"success": True, "score": score, "action": "report"}
    result = siteverify_captcha(siteverify, min_score=0.5).verify("token", None)
    assert result.ok is ok
    if not ok:
        assert "score" in result.reason


def test_hcaptcha_risk_score_is_not_a_humanity_score(siteverify: FakeSiteverify) -> None:
    # hCaptcha Enterprise scores risk (higher = worse): the reCAPTCHA threshold must not apply.
    siteverify.answer = {"success": True, "score": 0.1}
    assert siteverify_captcha(siteverify, "hcaptcha", min_score=0.5).verify("token", None).ok


@pytest.mark.parametrize("status", [500, 502, 403, 302])
def test_fails_closed_on_http_error(siteverify: FakeSiteverify, status: int) -> None:
    siteverify.status = status
    result = siteverify_captcha(siteverify).verify("token", None)
    assert not result.ok
    assert str(status) in result.reason


def test_fails_closed_on_garbage(siteverify: FakeSiteverify) -> None:
    siteverify.raw = b"<html>oops</html>"
    result = siteverify_captcha(siteverify).verify("token", None)
    assert not result.ok
    assert "non-JSON" in result.reason


def test_fails_closed_on_timeout(siteverify: FakeSiteverify) -> None:
    siteverify.delay = 1.0
    started = time.monotonic()
    result = siteverify_captcha(siteverify, timeout_seconds=0.2).verify("token", None)
    assert not result.ok
    assert "Timeout" in result.reason
    assert time.monotonic() - started < 0.9


def test_fails_closed_when_unreachable() -> None:
    fake = FakeSiteverify(url="http://127.0.0.1:9/siteverify")  # discard port: nothing listens
    result = siteverify_captcha(fake, timeout_seconds=1.0).verify("token", None)
    assert not result.ok
    assert "unreachable" in result.reason
    assert SECRET not in result.reason


@pytest.mark.parametrize("response", [None, ""])
def test_empty_response_makes_no_call(siteverify: FakeSiteverify, response: str | None) -> None:
    assert not siteverify_captcha(siteverify).verify(response, "203.0.113.7").ok
    assert siteverify.posts == []


def test_oversized_response_makes_no_call(siteverify: FakeSiteverify) -> None:
    assert not siteverify_captcha(siteverify).verify("x" * 5000, None).ok
    assert siteverify.posts == []


def test_standard_siteverify_urls_by_default() -> None:
    urls = {
        p: SITEVERIFY_PROVIDERS[p](CaptchaSettings(provider=p, site_key="k", secret="s")).verify_url
        for p in ("recaptcha", "hcaptcha", "turnstile")
    }
    assert urls == {
        "recaptcha": "https://www.google.com/recaptcha/api/siteverify",
        "hcaptcha": "https://api.hcaptcha.com/siteverify",
        "turnstile": "https://challenges.cloudflare.com/turnstile/v0/siteverify",
    }


def test_repr_hides_secret(siteverify: FakeSiteverify) -> None:
    assert SECRET not in repr(siteverify_captcha(siteverify))
