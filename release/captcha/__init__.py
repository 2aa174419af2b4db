"""CAPTCHA checks: one ``verify()`` per provider.

reCAPTCHA, hCaptcha and Turnstile are verified by POSTing the widget's token to the provider's
siteverify endpoint; ALTCHA is a self-hosted proof of work verified offline. Every failure mode
(missing token, network error, odd answer) fails closed: ``CaptchaResult(ok=False)`` with a
reason for logs, never an exception and never the secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

import requests
from altcha import ChallengeOptionsV1, PayloadV1, create_challenge_v1, verify_solution_v1

from release.config import CaptchaSettings

# Longest token we pass on: real tokens are ~0.5-2.5 kB (Turnstile documents 2048); anything
# longer is not a token, and we do not let strangers make us upload megabytes.
MAX_RESPONSE_LENGTH = 4096
# Widget base64 payloads are ~300 bytes; the bound keeps decoding cheap.
MAX_ALTCHA_PAYLOAD_LENGTH = 2048
ALTCHA_TTL_SECONDS = 600
ALTCHA_ALGORITHM: Final[Literal["SHA-256"]] = "SHA-256"
# Solved challenges remembered per process for replay protection (each lives ≤ the TTL).
ALTCHA_REPLAY_CAPACITY = 100_000

SITEVERIFY_URLS = {
    "recaptcha": "https://www.google.com/recaptcha/api/siteverify",
    "hcaptcha": "https://api.hcaptcha.com/siteverify",
    "turnstile": "https://challenges.cloudflare.com/turnstile/v0/siteverify",
}
FIELD_NAMES = {
    "recaptcha": "g-recaptcha-response",
    "hcaptcha": "h-captcha-response",
    "turnstile": "cf-turnstile-response",
    "altcha": "altcha",
}
SCRIPT_URLS = {
    "recaptcha": ("https://www.google.com/recaptcha/api.js",),
    "hcaptcha": ("https://js.hcaptcha.com/1/api.js",),
    "turnstile": ("https://challenges.cloudflare.com/turnstile/v0/api.js",),
}
# Origins the CSP must allow (script-src, frame-src, connect-src, style-src) per the providers'
# CSP guides; ALTCHA needs none beyond 'self'.
CSP_SOURCES = {
    "recaptcha": ("https://www.google.com", "https://www.gstatic.com", "https://recaptcha.google.com"),
    "hcaptcha": ("https://hcaptcha.com", "https://*.hcaptcha.com"),
    "turnstile": ("https://challenges.cloudflare.com",),
}


@dataclass(frozen=True)
class CaptchaResult:
    """Outcome of one check; ``reason`` is for logs and admins, never shown as a secret."""

    ok: bool
    reason: str = ""


class Captcha(Protocol):
    """What views and templates need from a CAPTCHA provider."""

    @property
    def provider(self) -> str: ...

    @property
    def field_name(self) -> str:
        """The form field the widget posts its answer in."""
        ...

    @property
    def site_key(self) -> str: ...

    @property
    def script_urls(self) -> tuple[str, ...]:
        """Scripts the page must load for the widget."""
        ...

    @property
    def style_urls(self) -> tuple[str, ...]:
        """Stylesheets the page must load for the widget."""
        ...

    @property
    def csp_sources(self) -> tuple[str, ...]:
        """Origins the Content-Security-Policy must allow for this provider."""
        ...

    def verify(self, response: str | None, remote_ip: str | None) -> CaptchaResult:
        """Check the posted answer; never raises, fails closed."""
        ...


def _default_static_url(filename: str) -> str:
    return "/static/" + filename


class SiteverifyCaptcha:
    """reCAPTCHA (v2, and v3 by score), hCaptcha or Turnstile via the provider's siteverify API."""

    style_urls: tuple[str, ...] = ()

    def __init__(self, settings: CaptchaSettings, *, session: requests.Session | None = None) -> None:
        if settings.provider not in SITEVERIFY_URLS:
            raise ValueError(f"not a siteverify provider: {settings.provider!r}")
        self.provider = settings.provider
        self.field_name = FIELD_NAMES[settings.provider]
        self.site_key = settings.site_key
        self.script_urls = SCRIPT_URLS[settings.provider]
        self.csp_sources = CSP_SOURCES[settings.provider]
        self.verify_url = settings.verify_url or SITEVERIFY_URLS[settings.provider]
        self._secret = settings.secret
        self._min_score = settings.min_score
        self._timeout = settings.timeout_seconds
        self._session = session or requests.Session()

    def __repr__(self) -> str:
        return f"SiteverifyCaptcha(provider={self.provider!r}, verify_url={self.verify_url!r})"

    def verify(self, response: str | None, remote_ip: str | None) -> CaptchaResult:
        """POST the token to siteverify; anything but a clear success is a failure."""
        if not response:
            return CaptchaResult(False, "missing-input-response")
        if len(response) > MAX_RESPONSE_LENGTH:
            return CaptchaResult(False, "response-too-long")
        form = {"secret": self._secret, "response": response}
        if remote_ip:
            form["remoteip"] = remote_ip
        if self.provider == "hcaptcha" and self.site_key:
            # hCaptcha checks the token was issued for our site key when it is sent.
            form["sitekey"] = self.site_key
        try:
            answer = self._session.post(self.verify_url, data=form, timeout=self._timeout)
        except requests.RequestException as exc:
            # Only the class name: some exceptions embed request details.
            return CaptchaResult(False, f"siteverify unreachable ({type(exc).__name__})")
        if answer.status_code != 200:
            return CaptchaResult(False, f"siteverify answered HTTP {answer.status_code}")
        try:
            body = answer.json()
        except ValueError:
            return CaptchaResult(False, "siteverify answered non-JSON")
        if not isinstance(body, dict):
            return CaptchaResult(False, "siteverify answered unexpected JSON")
        return self._judge(body)

    def _judge(self, body: dict[str, Any]) -> CaptchaResult:
        if body.get("success") is not True:
            return CaptchaResult(False, "rejected: " + _error_codes(body))
        # Only reCAPTCHA v3 scores mean "higher is more human"; hCaptcha Enterprise's is a risk score.
        if self.provider == "recaptcha" and "score" in body:
            score = body["score"]
            if isinstance(score, bool) or not isinstance(score, int | float):
                return CaptchaResult(False, "score is not a number")
            if score < self._min_score:
                return CaptchaResult(False, f"score {score} below {self._min_score}")
        return CaptchaResult(True)


def _error_codes(body: dict[str, Any]) -> str:
    codes = body.get("error-codes")
    if isinstance(codes, list) and codes:
        return ",".join(str(c) for c in codes[:5])[:200]
    return "no error code"


class MemoryReplayGuard:
    """Remembers used ALTCHA challenges until they expire, in this process only.

    With several processes (gunicorn workers) a payload could be replayed once per process;
    plug a shared store (e.g. a UNIQUE row in the database) into ``AltchaCaptcha(seen=...)`` to
    close that. Bounded: past ``capacity`` the oldest entries are forgotten first.
    """

    def __init__(self, capacity: int = ALTCHA_REPLAY_CAPACITY, clock: Callable[[], float] = time.time) -> None:
        self._entries: OrderedDict[str, float] = OrderedDict()
        self._capacity = capacity
        self._clock = clock
        self._lock = threading.Lock()

    def __call__(self, key: str, expires: float) -> bool:
        """Record ``key`` until ``expires``; True if it was already recorded (a replay)."""
        with self._lock:
            now = self._clock()
            # Entries arrive in roughly expiry order (fixed TTL), so expired ones sit in front.
            while self._entries and next(iter(self._entries.values())) < now:
                self._entries.popitem(last=False)
            if key in self._entries:
                return True
            while len(self._entries) >= self._capacity:
                self._entries.popitem(last=False)
            self._entries[key] = expires
            return False

    def __len__(self) -> int:
        return len(self._entries)


class AltchaCaptcha:
    """Self-hosted ALTCHA proof of work (widget 2.x, PoW v1), verified offline with HMAC."""

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
        seen: Callable[[str, float], bool] | None = None,
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
        self._seen = seen or MemoryReplayGuard(clock=clock)
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
    if len(values) != 1 or not values[0].isdigit():
        return None
    return float(values[0])


def solve_altcha(challenge: dict[str, Any], *, took: int = 1) -> str:
    """Brute-force a challenge and build the base64 payload the widget would post (tests, benches)."""
    salt, target = challenge["salt"], challenge["challenge"]
    hasher = {"SHA-1": hashlib.sha1, "SHA-256": hashlib.sha256, "SHA-512": hashlib.sha512}[challenge["algorithm"]]
    for number in range(int(challenge["maxNumber"]) + 1):
        if hasher((salt + str(number)).encode()).hexdigest() == target:
            payload = {
                "algorithm": challenge["algorithm"],
                "challenge": target,
                "number": number,
                "salt": salt,
                "signature": challenge["signature"],
                "took": took,
            }
            return base64.b64encode(json.dumps(payload).encode()).decode()
    raise ValueError("challenge has no solution up to maxNumber")


def altcha_key(app_secret: str) -> str:
    """A per-purpose ALTCHA HMAC key derived from the app secret (never the secret itself)."""
    return hmac.new(app_secret.encode(), b"sender-fp-release/altcha-hmac", hashlib.sha256).hexdigest()


def make_captcha(
    settings: CaptchaSettings,
    *,
    fallback_secret: str,
    static_url: Callable[[str], str] | None = None,
    session: requests.Session | None = None,
) -> Captcha:
    """Build the configured provider; ALTCHA keys on ``captcha.secret`` or, if empty, on
    a key derived from ``fallback_secret`` (the app secret)."""
    if settings.provider == "altcha":
        key = settings.secret or (altcha_key(fallback_secret) if fallback_secret else "")
        return AltchaCaptcha(key, max_number=settings.altcha_max_number, static_url=static_url)
    return SiteverifyCaptcha(settings, session=session)


__all__ = [
    "AltchaCaptcha",
    "Captcha",
    "CaptchaResult",
    "MemoryReplayGuard",
    "SiteverifyCaptcha",
    "altcha_key",
    "make_captcha",
    "solve_altcha",
]
