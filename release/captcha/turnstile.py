"""Cloudflare Turnstile."""

from __future__ import annotations

from release.captcha.siteverify import SiteverifyCaptcha


class Turnstile(SiteverifyCaptcha):
    """Turnstile: the plain siteverify protocol."""

    provider = "turnstile"
    field_name = "cf-turnstile-response"
    default_verify_url = "https://challenges.cloudflare.com/turnstile/v0/siteverify"
    script_urls = ("https://challenges.cloudflare.com/turnstile/v0/api.js",)
    csp_sources = ("https://challenges.cloudflare.com",)
