"""What every CAPTCHA provider offers views and templates, and what a check answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class CaptchaResult:
    """Outcome of one check; ``reason`` is for logs and admins, never shown as a secret."""

    ok: bool
    reason: str = ""


class Captcha(Protocol):
    """What views and templates need from a CAPTCHA provider.

    ``verify`` never raises and fails closed: a missing token, a network error or an odd answer
    is ``CaptchaResult(ok=False)`` with a reason for logs, never the secret.
    """

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
