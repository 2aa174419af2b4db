"""What a siteverify provider's keys look like, as far as the providers document it.

Only facts with a source: reCAPTCHA site keys are 40 characters (Google Cloud, "reCAPTCHA keys
overview"); hCaptcha site keys are UUIDs (its test site key is one); and each provider
publishes test keys that always pass or always fail, which must never reach production
(Google's reCAPTCHA FAQ, hCaptcha's "Integration testing", Cloudflare's "Test your
Turnstile implementation"). Anything else is only checked for being there.
"""

from __future__ import annotations

import re

RECAPTCHA_KEY_LENGTH = 40
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# The providers' published test keys: each makes every answer pass (or fail) whoever sent it.
TEST_SITE_KEYS = {
    "recaptcha": frozenset({"6LeIxAcTAAAAAJcZVRqyHh71UMIEGNQ_MXjiZKhI"}),
    "hcaptcha": frozenset({"10000000-ffff-ffff-ffff-000000000001"}),
    "turnstile": frozenset(
        {
            "1x00000000000000000000AA",
            "2x00000000000000000000AB",
            "1x00000000000000000000BB",
            "2x00000000000000000000BB",
            "3x00000000000000000000FF",
        }
    ),
}
TEST_SECRETS = {
    "recaptcha": frozenset({"6LeIxAcTAAAAAGG-vFI1TnRWxMZNFuojJ4WifJWe"}),
    "hcaptcha": frozenset({"0x0000000000000000000000000000000000000000"}),
    "turnstile": frozenset(
        {
            "1x0000000000000000000000000000000AA",
            "2x0000000000000000000000000000000AA",
            "3x0000000000000000000000000000000AA",
        }
    ),
}


def published_test_keys(provider: str, site_key: str, secret: str) -> list[str]:
    """The config keys (``captcha.site_key``, ``captcha.secret``) holding a published test key."""
    found = []
    if site_key in TEST_SITE_KEYS.get(provider, ()):
        found.append("captcha.site_key")
    if secret in TEST_SECRETS.get(provider, ()):
        found.append("captcha.secret")
    return found


def shape_problems(provider: str, site_key: str, secret: str) -> list[str]:
    """What looks wrong with the keys' shape, in words naming the config key; empty if none."""
    problems = []
    if not site_key.strip():
        problems.append("captcha.site_key is empty")
    if not secret.strip():
        problems.append("captcha.secret is empty")
    if site_key and site_key == secret:
        problems.append("captcha.site_key and captcha.secret are the same value (the site key is public)")
    if provider == "recaptcha" and site_key and len(site_key) != RECAPTCHA_KEY_LENGTH:
        problems.append(f"captcha.site_key has {len(site_key)} characters; reCAPTCHA site keys have 40")
    if provider == "hcaptcha" and site_key and not UUID.fullmatch(site_key):
        problems.append("captcha.site_key is not a UUID, as hCaptcha site keys are")
    return problems
