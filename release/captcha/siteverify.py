"""The siteverify protocol reCAPTCHA, hCaptcha and Turnstile share: POST the widget's token
with our secret to the provider, and trust nothing but a clear ``"success": true``."""

from __future__ import annotations

import re
from typing import Any, ClassVar

import requests

from release.captcha.base import CaptchaResult
from release.config import CaptchaSettings

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")

# Longest token we pass on: real tokens are ~0.5-2.5 kB (Turnstile documents 2048); anything
# longer is not a token, and we do not let strangers make us upload megabytes.
MAX_RESPONSE_LENGTH = 4096
# Error codes with which reCAPTCHA, hCaptcha and Turnstile say the secret is wrong.
SECRET_REFUSED = frozenset({"invalid-input-secret", "missing-input-secret"})


class SiteverifyCaptcha:
    """A provider verified over HTTP; subclasses name the provider and adjust form or verdict."""

    provider: ClassVar[str]
    field_name: ClassVar[str]
    default_verify_url: ClassVar[str]
    script_urls: ClassVar[tuple[str, ...]]
    # Origins the CSP must allow (script-src, frame-src, connect-src, style-src), per the
    # provider's CSP guide.
    csp_sources: ClassVar[tuple[str, ...]]
    style_urls: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: CaptchaSettings, *, session: requests.Session | None = None) -> None:
        self.site_key = settings.site_key
        self.verify_url = settings.verify_url or self.default_verify_url
        self._secret = settings.secret
        self._min_score = settings.min_score
        self._timeout = settings.timeout_seconds
        self._session = session or requests.Session()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(verify_url={self.verify_url!r})"

    def verify(self, response: str | None, remote_ip: str | None) -> CaptchaResult:
        """POST the token to siteverify; anything but a clear success is a failure."""
        if not response:
            return CaptchaResult(False, "missing-input-response")
        if len(response) > MAX_RESPONSE_LENGTH:
            return CaptchaResult(False, "response-too-long")
        try:
            answer = self._session.post(self.verify_url, data=self.form(response, remote_ip), timeout=self._timeout)
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
        if body.get("success") is not True:
            return CaptchaResult(False, "rejected: " + _error_codes(body))
        return self.judge(body)

    def form(self, response: str, remote_ip: str | None) -> dict[str, str]:
        """What is POSTed: our secret, the widget's token, and the client's address if known."""
        form = {"secret": self._secret, "response": response}
        if remote_ip:
            form["remoteip"] = remote_ip
        return form

    def judge(self, body: dict[str, Any]) -> CaptchaResult:
        """The verdict on an answer that says success; a provider may ask for more."""
        return CaptchaResult(True)

    def probe(self) -> CaptchaResult:
        """Reach the verify URL with our secret and no token, for check-config.

        No token means nothing is verified or spent: a working provider answers an error
        list (``missing-input-response``), and names ``invalid-input-secret`` when it does
        not know our secret. ``ok`` means the URL answered like a siteverify endpoint and
        did not refuse the secret.
        """
        try:
            answer = self._session.post(self.verify_url, data={"secret": self._secret}, timeout=self._timeout)
        except requests.RequestException as exc:
            return CaptchaResult(False, f"unreachable ({type(exc).__name__})")
        try:
            body = answer.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("success"), bool):
            return CaptchaResult(False, f"HTTP {answer.status_code} without a siteverify JSON answer")
        codes = body.get("error-codes")
        # The answer is the verify URL's words, printed on an operator's terminal: only plain,
        # single-line text, and never our secret echoed back.
        shown = _CONTROL.sub(" ", _error_codes(body))
        shown = shown.replace(self._secret, "***") if self._secret else shown
        if isinstance(codes, list) and any(c in SECRET_REFUSED for c in codes):
            return CaptchaResult(False, "the provider refused the secret: " + shown)
        return CaptchaResult(True, f"answers ({shown})")


def _error_codes(body: dict[str, Any]) -> str:
    codes = body.get("error-codes")
    if isinstance(codes, list) and codes:
        return ",".join(str(c) for c in codes[:5])[:200]
    return "no error code"
