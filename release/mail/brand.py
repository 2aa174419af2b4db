"""Branding values as templates use them (pure: built from settings, no Flask)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from release.config import BrandingSettings

DEFAULT_COLOR = "#0d6efd"


@dataclass(frozen=True)
class Brand:
    """Validated branding values, ready for templates (which still escape them)."""

    name: str = ""
    logo_url: str = ""  # absolute, for mails
    logo_src: str = ""  # as configured, for pages of this service
    color: str = DEFAULT_COLOR
    support_href: str = ""
    support_label: str = ""
    footer_text: str = ""

    @property
    def color_dark(self) -> str:
        """The colour darkened by 15 %: hover and active states."""
        return shade(self.color, 0.85)


def shade(color: str, factor: float) -> str:
    """``#rrggbb`` (or ``#rgb``) with each channel multiplied by ``factor``."""
    digits = color.lstrip("#")
    if len(digits) == 3:
        digits = "".join(ch * 2 for ch in digits)
    channels = [min(255, round(int(digits[i : i + 2], 16) * factor)) for i in (0, 2, 4)]
    return "#" + "".join(f"{c:02x}" for c in channels)


def brand_from(branding: BrandingSettings, public_url: str) -> Brand:
    """The Brand for the configured values; relative logo paths become absolute for mails."""
    contact = branding.support_contact
    href = contact if urlsplit(contact).scheme in ("http", "https") else (f"mailto:{contact}" if contact else "")
    logo = branding.logo_url
    return Brand(
        name=branding.organisation_name,
        logo_url=urljoin(public_url.rstrip("/") + "/", logo) if logo else "",
        logo_src=logo,
        color=branding.primary_color.lower(),
        support_href=href,
        support_label=contact,
        footer_text=branding.footer_text,
    )
