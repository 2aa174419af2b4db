"""ALTCHA: a self-hosted proof of work (widget 2.x, PoW v1), verified offline with HMAC.

Challenges and verification are the altcha library's; what is ours is the expiry in the salt
checked against our clock, the bounds on a stranger's payload, and single use (a
:class:`~release.captcha.replay.ReplayGuard` that every web process shares).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from typing import Any, Final, Literal

from altcha import ChallengeOptionsV1, PayloadV1, create_challenge_v1, solve_challenge_v1, verify_solution_v1

from release.captcha.base import CaptchaResult
from release.captcha.replay import MemoryReplayGuard, ReplayGuard

# Widget base64 payloads are ~300 bytes; the bound keeps decoding cheap.
MAX_ALTCHA_PAYLOAD_LENGTH = 2048
ALTCHA_TTL_SECONDS = 600
ALTCHA_ALGORITHM: Final[Literal["SHA-256"]] = "SHA-256"


def _default_static_url(filename: str) -> str:
    return "/static/" + filename


class AltchaCaptcha:
    """Self-hosted ALTCHA proof of work (widget 2.x, PoW v1), verified offline with HMAC.

    ``seen`` remembers used solutions; the default remembers them in this process only, so
    the service passes one that every process shares (release/container.py).
    """

    provider = "altcha"
    field_name = "altcha"
    site_key = ""
    csp_sources: tuple[str, ...] = ()

    def __init__(
        self,
        hmac_key: str,
        *,
        max_number: int = 100_000,
        ttl_seconds: int = ALTCHA_TTL_SECONDS,
        static_url: Callable[[str], str] | None = None,
        seen: ReplayGuard | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not hmac_key:
            raise ValueError("ALTCHA needs an HMAC key")
        if max_number < 1:
            raise ValueError("max_number must be at least 1")
        self._key = hmac_key
        self.max_number = max_number
        self.ttl_seconds = ttl_seconds
        self._static_url = static_url or _default_static_url
        self._seen: ReplayGuard = seen or MemoryReplayGuard(clock=clock)
        self._clock = clock

    def __repr__(self) -> str:
        return f"AltchaCaptcha(max_number={self.max_number}, ttl_seconds={self.ttl_seconds})"

    # URLs are built on access so that a url_for-based ``static_url`` runs inside a request.
    @property
    def script_urls(self) -> tuple[str, ...]:
        """The vendored widget (UMD build; finds worker.js next to itself)."""
        return (self._static_url("vendor/altcha/altcha.umd.js"),)

    @property
    def style_urls(self) -> tuple[str, ...]:
        """The widget's stylesheet (external build: no injected <style>, CSP-friendly)."""
        return (self._static_url("vendor/altcha/altcha.css"),)

    @property
    def worker_url(self) -> str:
        """The proof-of-work worker script, same origin."""
        return self._static_url("vendor/altcha/worker.js")

    def challenge(self) -> dict[str, Any]:
        """A fresh signed challenge for the widget's ``challengeurl`` (JSON-able, no secret)."""
        expires = int(self._clock()) + self.ttl_seconds
        options = ChallengeOptionsV1(
            algorithm=ALTCHA_ALGORITHM,
            max_number=self.max_number,
            hmac_key=self._key,
            salt=f"{secrets.token_hex(12)}?expires={expires}",
        )
        challenge = create_challenge_v1(options)
        data: dict[str, Any] = challenge.to_dict()
        return data

    def verify(self, response: str | None, remote_ip: str | None) -> CaptchaResult:
        """Check the widget's base64 payload offline: signature, solution, expiry, single use."""
        if not response:
            return CaptchaResult(False, "missing altcha payload")
        if len(response) > MAX_ALTCHA_PAYLOAD_LENGTH:
            return CaptchaResult(False, "altcha payload too long")
        payload = _decode_payload(response)
        if payload is None:
            return CaptchaResult(False, "malformed altcha payload")
        if payload["algorithm"] != ALTCHA_ALGORITHM:
            return CaptchaResult(False, "unexpected altcha algorithm")
        expires = _salt_expiry(payload["salt"])
        # Our challenges always carry an expiry; one without it was not issued by us.
        if expires is None:
            return CaptchaResult(False, "altcha challenge has no expiry")
        if expires < self._clock():
            return CaptchaResult(False, "altcha challenge expired")
        solution = PayloadV1(
            ALTCHA_ALGORITHM, payload["challenge"], payload["number"], payload["salt"], payload["signature"]
        )
        # Expiry is checked above against our clock; the lib would use time.time().
        ok, error = verify_solution_v1(solution, self._key, False)
        if not ok:
            return CaptchaResult(False, f"altcha verification failed ({error or 'bad solution or signature'})")
        if self._seen(payload["signature"], expires):
            return CaptchaResult(False, "altcha payload already used")
        return CaptchaResult(True)


def _decode_payload(response: str) -> dict[str, Any] | None:
    """Strictly parse the widget payload; None for anything not shaped like one."""
    try:
        data = json.loads(base64.b64decode(response, validate=True))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    for field in ("algorithm", "challenge", "salt", "signature"):
        if not isinstance(data.get(field), str):
            return None
    number = data.get("number")
    if isinstance(number, bool) or not isinstance(number, int) or number < 0:
        return None
    return data


def _salt_expiry(salt: str) -> float | None:
    """The ``expires`` our challenges put in the salt's query part (unique key, else None)."""
    _, _, query = salt.partition("?")
    values = [v for k, _, v in (p.partition("=") for p in query.split("&")) if k == "expires"]
    if len(values) != 1 or not (values[0].isascii() and values[0].isdigit()):
        return None
    return float(values[0])


def altcha_key(app_secret: str) -> str:
    """A per-purpose ALTCHA HMAC key derived from the app secret (never the secret itself)."""
    return hmac.new(app_secret.encode(), b"sender-fp-release/altcha-hmac", hashlib.sha256).hexdigest()


def solve(challenge: dict[str, Any]) -> str:
    """The payload the widget would post for ``challenge`` (the JSON the challenge endpoint
    serves), found with the altcha library's solver: for scripted smoke tests."""
    algorithm, target, salt = challenge["algorithm"], challenge["challenge"], challenge["salt"]
    solution = solve_challenge_v1(target, salt, algorithm, int(challenge["maxNumber"]))
    if solution is None:
        raise ValueError("the challenge has no solution up to its maxNumber")
    payload: str = PayloadV1(algorithm, target, solution.number, salt, challenge["signature"]).to_base64()
    return payload
