"""hCaptcha."""

from __future__ import annotations

from release.captcha.siteverify import SiteverifyCaptcha


class Hcaptcha(SiteverifyCaptcha):
    """hCaptcha. Its Enterprise score is a risk score (higher is worse), so no threshold applies."""

    provider = "hcaptcha"
    field_name = "h-captcha-response"
    default_verify_url = "https://api.hcaptcha.com/siteverify"
    script_urls = ("https://js.hcaptcha.com/1/api.js",)
    csp_sources = ("https://hcaptcha.com", "https://*.hcaptcha.com")

    def form(self, response: str, remote_ip: str | None) -> dict[str, str]:
        """Also the site key: hCaptcha then checks the token was issued for our site."""
        form = super().form(response, remote_ip)
        if self.site_key:
            form["sitekey"] = self.site_key
        return form
