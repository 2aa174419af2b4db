"""Google reCAPTCHA, v2 (checkbox) and v3 (by score)."""

from __future__ import annotations

from typing import Any

from release.captcha.base import CaptchaResult
from release.captcha.siteverify import SiteverifyCaptcha


class Recaptcha(SiteverifyCaptcha):
    """reCAPTCHA; a v3 answer also has to reach ``captcha.min_score``."""

    provider = "recaptcha"
    field_name = "g-recaptcha-response"
    default_verify_url = "https://www.google.com/recaptcha/api/siteverify"
    script_urls = ("https://www.google.com/recaptcha/api.js",)
    csp_sources = ("https://www.google.com", "https://www.gstatic.com", "https://recaptcha.google.com")

    def judge(self, body: dict[str, Any]) -> CaptchaResult:
        """v3 scores mean "higher is more human": below the threshold fails."""
        if "score" not in body:
            return CaptchaResult(True)
        score = body["score"]
        if isinstance(score, bool) or not isinstance(score, int | float):
            return CaptchaResult(False, "score is not a number")
        if score < self._min_score:
            return CaptchaResult(False, f"score {score} below {self._min_score}")
        return CaptchaResult(True)
