"""CAPTCHA checks, one module per provider behind :class:`~release.captcha.base.Captcha`.

reCAPTCHA, hCaptcha and Turnstile are verified by POSTing the widget's token to the provider's
siteverify endpoint (:mod:`.siteverify`); ALTCHA is a self-hosted proof of work verified offline
(:mod:`.altcha`), each solution used once (:mod:`.replay`). :func:`make_captcha` builds the
configured one.
"""

from __future__ import annotations

from collections.abc import Callable

import requests

from release.captcha.altcha import AltchaCaptcha, altcha_key
from release.captcha.base import Captcha
from release.captcha.hcaptcha import Hcaptcha
from release.captcha.recaptcha import Recaptcha
from release.captcha.replay import ReplayGuard
from release.captcha.siteverify import SiteverifyCaptcha
from release.captcha.turnstile import Turnstile
from release.config import CaptchaSettings

SITEVERIFY_PROVIDERS: dict[str, type[SiteverifyCaptcha]] = {
    cls.provider: cls for cls in (Recaptcha, Hcaptcha, Turnstile)
}


def make_captcha(
    settings: CaptchaSettings,
    *,
    fallback_secret: str,
    static_url: Callable[[str], str] | None = None,
    session: requests.Session | None = None,
    replay: ReplayGuard | None = None,
) -> Captcha:
    """Build the configured provider; ALTCHA keys on ``captcha.secret`` or, if empty, on
    a key derived from ``fallback_secret`` (the app secret), and remembers used solutions
    in ``replay`` (default: this process's memory). The siteverify providers' tokens are
    single-use at the provider."""
    if settings.provider == "altcha":
        key = settings.secret or (altcha_key(fallback_secret) if fallback_secret else "")
        return AltchaCaptcha(key, max_number=settings.altcha_max_number, static_url=static_url, seen=replay)
    if settings.provider not in SITEVERIFY_PROVIDERS:
        raise ValueError(f"unknown CAPTCHA provider: {settings.provider!r}")
    return SITEVERIFY_PROVIDERS[settings.provider](settings, session=session)


__all__ = ["Captcha", "ReplayGuard", "make_captcha"]
