"""ALTCHA with real proofs of work (solved by the altcha library), and the factory."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from altcha import ChallengeOptionsV1, create_challenge_v1

from release.captcha import make_captcha
from release.captcha.altcha import AltchaCaptcha, MemoryReplayGuard, altcha_key
from release.captcha.base import CaptchaResult
from release.config import CaptchaSettings
from tests.support.altcha import solve_altcha

TEMPLATES = Path(__file__).resolve().parent.parent.parent / "templates"
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
        # A digit str.isdigit() accepts and float() refuses: an answer, never an exception.
        lambda p, c: _edit(p, salt=c["salt"].split("expires=")[0] + "expires=\u00b2"),
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
