"""The CAPTCHA template partial: each provider's widget, no inline script."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

from release.captcha import SITEVERIFY_PROVIDERS
from release.captcha.altcha import AltchaCaptcha
from release.config import CaptchaSettings

TEMPLATES = Path(__file__).resolve().parent.parent.parent / "templates"
KEY = "altcha-hmac-key-for-tests-0123456789"


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
    html = render(SITEVERIFY_PROVIDERS[provider](CaptchaSettings(provider=provider, site_key="k<1>", secret="s")))
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
