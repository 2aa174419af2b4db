"""The operator's branding (name, logo, colour, support contact, footer) on pages and in mails.

The Content-Security-Policy forbids inline styles, so the colour reaches pages through a small
stylesheet served from config; mails carry it inline, as mail clients need.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app

from release.config import Settings
from release.mail.brand import Brand, brand_from

bp = Blueprint("branding", __name__)


def brand() -> Brand:
    """This app's brand (inside a request or app context)."""
    found: Brand = current_app.extensions["brand"]
    return found


def logo_origin(settings: Settings) -> str:
    """The origin an external logo is loaded from (for the CSP), or ""."""
    parts = urlsplit(settings.branding.logo_url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") else ""


#: Links take the darker shade: the default colour on the light page background misses WCAG AA.
CSS = """:root {{ --brand-primary: {c}; --bs-primary: {c}; --bs-link-color: {d}; --bs-link-color-rgb: {rgb};
  --bs-link-hover-color: {d}; --bs-link-hover-color-rgb: {rgb}; }}
.brand-mark {{ background: {c}; }}
.btn-primary {{ --bs-btn-bg: {c}; --bs-btn-border-color: {c};
  --bs-btn-hover-bg: {d}; --bs-btn-hover-border-color: {d}; --bs-btn-active-bg: {d}; --bs-btn-active-border-color: {d};
  --bs-btn-disabled-bg: {c}; --bs-btn-disabled-border-color: {c}; }}
.text-bg-primary {{ background-color: {c} !important; }}
"""


@bp.get("/branding.css")
def stylesheet() -> Response:
    """The primary colour as CSS (the value is validated as a hex colour at start-up)."""
    current = brand()
    dark = current.color_dark
    rgb = ", ".join(str(int(dark[i : i + 2], 16)) for i in (1, 3, 5))
    response = Response(CSS.format(c=current.color, d=dark, rgb=rgb), mimetype="text/css")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def register(app: Flask, settings: Settings) -> None:
    """Serve the stylesheet and make ``brand`` available to every page template."""
    app.extensions["brand"] = brand_from(settings.branding, settings.app.public_url)
    app.register_blueprint(bp)
    app.context_processor(lambda: {"brand": brand()})
