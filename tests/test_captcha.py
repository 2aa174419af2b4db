"""CAPTCHA verification against a real local siteverify server, and real ALTCHA proofs of work."""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import pytest
from altcha import ChallengeOptionsV1, create_challenge_v1
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from release.captcha import (
    AltchaCaptcha,
    CaptchaResult,
    MemoryReplayGuard,
    SiteverifyCaptcha,
    altcha_key,
    make_captcha,
    solve_altcha,
)
from release.config import CaptchaSettings

SECRET = "siteverify-secret-0123456789abcdef"
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


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
    return SiteverifyCaptcha(dataclasses.replace(settings, **overrides))


# --- siteverify providers -------------------------------------------------------------------


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
        p: SiteverifyCaptcha(CaptchaSettings(provider=p, site_key="k", secret="s")).verify_url
        for p in ("recaptcha", "hcaptcha", "turnstile")
    }
    assert urls == {
        "recaptcha": "https://www.google.com/recaptcha/api/siteverify",
        "hcaptcha": "https://api.hcaptcha.com/siteverify",
        "turnstile": "https://challenges.cloudflare.com/turnstile/v0/siteverify",
    }


def test_repr_hides_secret(siteverify: FakeSiteverify) -> None:
    assert SECRET not in repr(siteverify_captcha(siteverify))


# --- ALTCHA -----------------------------------------------------------------------------------

KEY = "altcha-hmac-key-for-tests-0123456789"


class Clock:
    """A settable clock so expiry is tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def altcha(clock: Clock) -> AltchaCaptcha:
    return AltchaCaptcha(KEY, max_number=5_000, clock=clock)


def _edit(payload: str, **changes: Any) -> str:
    data = json.loads(base64.b64decode(payload))
    data.update(changes)
    return base64.b64encode(json.dumps(data).encode()).decode()


def test_challenge_is_json_for_the_widget(altcha: AltchaCaptcha, clock: Clock) -> None:
    challenge = altcha.challenge()
    assert set(challenge) == {"algorithm", "challenge", "maxNumber", "salt", "signature"}
    assert challenge["algorithm"] == "SHA-256"
    assert challenge["maxNumber"] == 5_000
    assert f"expires={int(clock.now) + 600}" in challenge["salt"]
    assert KEY not in json.dumps(challenge)


def test_solved_challenge_passes(altcha: AltchaCaptcha) -> None:
    assert altcha.verify(solve_altcha(altcha.challenge()), "203.0.113.7") == CaptchaResult(True)


def test_replay_is_refused(altcha: AltchaCaptcha) -> None:
    payload = solve_altcha(altcha.challenge())
    assert altcha.verify(payload, None).ok
    again = altcha.verify(payload, None)
    assert not again.ok
    assert "already used" in again.reason
    # Re-encoding the same solution differently is still the same challenge.
    assert not altcha.verify(_edit(payload, took=999), None).ok


def test_expired_challenge_is_refused(altcha: AltchaCaptcha, clock: Clock) -> None:
    payload = solve_altcha(altcha.challenge())
    clock.now += 601
    result = altcha.verify(payload, None)
    assert not result.ok
    assert "expired" in result.reason


def test_wrong_key_is_refused(clock: Clock) -> None:
    other = AltchaCaptcha("some-other-key-abcdefghijklmnop", max_number=5_000, clock=clock)
    mine = AltchaCaptcha(KEY, max_number=5_000, clock=clock)
    assert not mine.verify(solve_altcha(other.challenge()), None).ok


@pytest.mark.parametrize(
    "tamper",
    [
        lambda p, c: _edit(p, number=json.loads(base64.b64decode(p))["number"] + 1),
        lambda p, c: _edit(p, signature="0" * 64),
        lambda p, c: _edit(p, salt=c["salt"].replace("expires=", "expires=9")),  # push expiry out
        lambda p, c: _edit(p, challenge="0" * 64),
        lambda p, c: _edit(p, algorithm="SHA-1"),
        lambda p, c: _edit(p, number=str(json.loads(base64.b64decode(p))["number"])),
        lambda p, c: p[:-4],
        lambda p, c: "not base64 at all!",
        lambda p, c: base64.b64encode(b'"algorithm challenge number salt signature"').decode(),
        lambda p, c: base64.b64encode(b"[1, 2]").decode(),
        lambda p, c: "A" * 5000,
    ],
)
def test_tampered_payload_is_refused(altcha: AltchaCaptcha, tamper: Any) -> None:
    challenge = altcha.challenge()
    payload = solve_altcha(challenge)
    assert not altcha.verify(tamper(payload, challenge), None).ok
    # Refusing junk does not burn the genuine solution.
    assert altcha.verify(payload, None).ok


def test_unsigned_or_expiry_less_challenge_is_refused(altcha: AltchaCaptcha) -> None:
    challenge = create_challenge_v1(ChallengeOptionsV1(max_number=1000, hmac_key=KEY)).to_dict()
    result = altcha.verify(solve_altcha(challenge), None)
    assert not result.ok
    assert "no expiry" in result.reason


@pytest.mark.parametrize("response", [None, ""])
def test_missing_altcha_payload(altcha: AltchaCaptcha, response: str | None) -> None:
    assert not altcha.verify(response, None).ok


def test_custom_seen_hook_is_consulted(clock: Clock) -> None:
    calls: list[tuple[str, float]] = []

    def seen(key: str, expires: float) -> bool:
        calls.append((key, expires))
        return len(calls) > 1

    captcha = AltchaCaptcha(KEY, max_number=1_000, clock=clock, seen=seen)
    challenge = captcha.challenge()
    payload = solve_altcha(challenge)
    assert captcha.verify(payload, None).ok
    assert not captcha.verify(payload, None).ok
    assert calls[0] == (challenge["signature"], clock.now + 600)


def test_replay_guard_forgets_expired_and_stays_bounded(clock: Clock) -> None:
    guard = MemoryReplayGuard(capacity=3, clock=clock)
    assert guard("a", clock.now + 10) is False
    assert guard("a", clock.now + 10) is True
    clock.now += 11
    assert guard("a", clock.now + 10) is False  # expired entry was dropped: it is new again
    for key in "bcde":
        guard(key, clock.now + 10)
    assert len(guard) == 3


def test_make_captcha_altcha_keys(clock: Clock) -> None:
    app_secret = "app-secret-key-0123456789abcdef0123"
    derived = make_captcha(CaptchaSettings(provider="altcha"), fallback_secret=app_secret)
    assert isinstance(derived, AltchaCaptcha)
    payload = solve_altcha(derived.challenge())
    # Keyed on a derivation of the app secret, not the app secret itself.
    assert AltchaCaptcha(altcha_key(app_secret)).verify(payload, None).ok
    assert not AltchaCaptcha(app_secret).verify(payload, None).ok
    explicit = make_captcha(CaptchaSettings(provider="altcha", secret=KEY), fallback_secret=app_secret)
    assert isinstance(explicit, AltchaCaptcha)
    assert AltchaCaptcha(KEY).verify(solve_altcha(explicit.challenge()), None).ok
    with pytest.raises(ValueError, match="HMAC key"):
        make_captcha(CaptchaSettings(provider="altcha"), fallback_secret="")


def test_make_captcha_static_urls_and_max_number() -> None:
    captcha = make_captcha(
        CaptchaSettings(provider="altcha", altcha_max_number=1234),
        fallback_secret="x" * 32,
        static_url=lambda f: "/assets/" + f,
    )
    assert isinstance(captcha, AltchaCaptcha)
    assert captcha.challenge()["maxNumber"] == 1234
    assert captcha.script_urls == ("/assets/vendor/altcha/altcha.umd.js",)
    assert captcha.style_urls == ("/assets/vendor/altcha/altcha.css",)
    assert captcha.csp_sources == ()
    assert captcha.field_name == "altcha"


def test_vendored_altcha_files_exist() -> None:
    captcha = AltchaCaptcha(KEY, static_url=lambda f: f)
    static = TEMPLATES.parent / "static"
    for path in (*captcha.script_urls, *captcha.style_urls, captcha.worker_url):
        assert (static / path).is_file(), path


# --- template partial -------------------------------------------------------------------------


def render(captcha: object, challenge_url: str = "/captcha/challenge") -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, extensions=["jinja2.ext.i18n"])
    env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]  # the partial's text is translatable
    return env.get_template("_captcha.html").render(captcha=captcha, challenge_url=challenge_url)


@pytest.mark.parametrize(
    ("provider", "markup", "script"),
    [
        ("recaptcha", '<div class="g-recaptcha" data-sitekey="k&lt;1&gt;">', "https://www.google.com/recaptcha/api.js"),
        ("hcaptcha", '<div class="h-captcha" data-sitekey="k&lt;1&gt;">', "https://js.hcaptcha.com/1/api.js"),
        (
            "turnstile",
            '<div class="cf-turnstile" data-sitekey="k&lt;1&gt;"',
            "https://challenges.cloudflare.com/turnstile/v0/api.js",
        ),
    ],
)
def test_partial_renders_siteverify_widgets(provider: str, markup: str, script: str) -> None:
    html = render(SiteverifyCaptcha(CaptchaSettings(provider=provider, site_key="k<1>", secret="s")))
    assert markup in html
    assert f'<script src="{script}' in html
    assert "<noscript>" in html
    assert "<script>" not in html  # no inline script: the CSP forbids it


def test_partial_renders_altcha_widget() -> None:
    html = render(AltchaCaptcha(KEY), challenge_url="/captcha/altcha?x=1&y=2")
    assert '<altcha-widget challengeurl="/captcha/altcha?x=1&amp;y=2" name="altcha"' in html
    assert '<script src="/static/vendor/altcha/altcha.umd.js"' in html
    assert '<link rel="stylesheet" href="/static/vendor/altcha/altcha.css">' in html
    assert "<script>" not in html
