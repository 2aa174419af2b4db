"""Notification mails: language by recipient domain, branding, instance overrides."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from release.config import BrandingSettings, ConfigError, I18nSettings, settings_from_mapping
from release.devtools.mailcapture import text_and_html
from release.mail.brand import brand_from
from release.mail.compose import Notification, Outcome, build_notification, build_outcome
from release.mail.templates import MailTemplates, locale_for, mail_environment

SENDER = "Release <release@example.org>"


def notification(to: str = "bob@example.net", **overrides: str) -> Notification:
    values = {
        "to_address": to,
        "release_url": "https://release.example.com/release/tok",
        "blocked_sender": "alice@partner.example",
        "blocked_subject": "Offert",
        "received_at": datetime(2026, 3, 1, 14, 5, tzinfo=UTC),
        "expires_at": datetime(2026, 3, 8, 14, 5, tzinfo=UTC),
        "node": "mx1",
        "message_id": "<n-1@release.example.com>",
        **overrides,
    }
    return Notification(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("anna@example.se", "sv"),
        ("anna@Mail.Example.SE", "sv"),  # subdomains inherit, case does not matter
        ("hans@firma.de", "de"),
        ("bob@example.com", "en"),
        ("eve@notexample.se", "en"),  # a suffix of a label is not a parent domain
        ("broken", "en"),
    ],
)
def test_locale_by_recipient_domain(address: str, expected: str) -> None:
    assert locale_for(address, {"example.se": "sv", "firma.de": "de"}, "en") == expected


@pytest.mark.parametrize(
    ("locale", "subject", "greeting", "unknown"),
    [
        ("en", "A message to you was held as spam: Offert", "Hello,", "(unknown sender)"),
        ("sv", "Ett meddelande till dig har stoppats som skräppost: Offert", "Hej!", "(okänd avsändare)"),
        ("de", "Eine Nachricht an Sie wurde als Spam zurückgehalten: Offert", "Guten Tag,", "(unbekannter Absender)"),
    ],
)
def test_mail_is_written_in_the_domains_language(locale: str, subject: str, greeting: str, unknown: str) -> None:
    templates = MailTemplates(I18nSettings(domain_locales={"example.se": "sv", "firma.de": "de"}))
    to = {"en": "bob@example.com", "sv": "anna@example.se", "de": "hans@firma.de"}[locale]
    msg = build_notification(notification(to, blocked_sender=""), sender=SENDER, jinja_env=templates.for_address(to))
    assert msg["Subject"] == subject
    text, html = text_and_html(msg)
    assert text.startswith(greeting) and unknown in text
    assert html is not None and f'<html lang="{locale}">' in html and unknown in html


def test_empty_subject_says_so_in_the_mails_language() -> None:
    msg = build_notification(notification(blocked_subject=""), sender=SENDER, jinja_env=mail_environment("de"))
    assert str(msg["Subject"]).endswith(": (kein Betreff)")


def test_default_locale_applies_to_unlisted_domains() -> None:
    templates = MailTemplates(I18nSettings(default_locale="de"))
    assert templates.locale_for("x@anything.example") == "de"


def test_branding_in_mail_is_escaped() -> None:
    branding = BrandingSettings(
        organisation_name='Acme <b>&</b> "Co"',
        logo_url="/static/logo.png",
        primary_color="#123ABC",
        support_contact="help@acme.example",
        footer_text="Acme AB · <script>alert(1)</script>",
    )
    env = mail_environment("sv", brand=brand_from(branding, "https://release.acme.example"))
    n = notification(organisation=branding.organisation_name)
    text, html = text_and_html(build_notification(n, sender=SENDER, jinja_env=env))
    assert html is not None
    assert "Acme &lt;b&gt;&amp;&lt;/b&gt; &#34;Co&#34;" in html and "<b>&</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert 'src="https://release.acme.example/static/logo.png"' in html  # absolute: mail has no base URL
    assert "background:#123abc" in html
    assert 'href="mailto:help@acme.example"' in html
    assert 'Skräppostfiltret hos Acme <b>&</b> "Co" har stoppat' in text  # plain text: not HTML-escaped
    assert "Frågor? Kontakta help@acme.example." in text and "Acme AB · <script>" in text


def test_instance_template_overrides_the_builtin(tmp_path: Path) -> None:
    (tmp_path / "mail").mkdir()
    (tmp_path / "mail" / "notification.html").write_text(
        "<p>{{ _('Hello,') }} Custom {{ brand.name }} {{ subject }}</p>", encoding="utf-8"
    )
    brand = brand_from(BrandingSettings(organisation_name="<Acme>"), "https://r.example")
    templates = MailTemplates(I18nSettings(domain_locales={"example.se": "sv"}), override_dir=tmp_path, brand=brand)
    to = "anna@example.se"
    n = notification(to, blocked_subject="<i>x</i>")
    text, html = text_and_html(build_notification(n, sender=SENDER, jinja_env=templates.for_address(to)))
    assert (
        html is not None and html.strip() == "<p>Hej! Custom &lt;Acme&gt; &lt;i&gt;x&lt;/i&gt;</p>"
    )  # still autoescaped
    assert text.startswith("Hej!\n")  # the text part is not overridden: the built-in one is used


def test_config_validates_i18n_and_branding() -> None:
    base = {"app": {"demo": True, "secret_key": "s" * 32}}
    cases = [
        ({"i18n": {"default_locale": "fr"}}, "i18n.default_locale"),
        ({"i18n": {"domain_locales": {"example.se": "fi"}}}, "i18n.domain_locales.example.se"),
        ({"i18n": {"domain_locales": {"not a domain": "sv"}}}, "i18n.domain_locales.not a domain"),
        ({"i18n": {"domain_locales": ["example.se"]}}, "i18n.domain_locales"),
        ({"branding": {"primary_color": "red"}}, "branding.primary_color"),
        ({"branding": {"primary_color": "#12345"}}, "branding.primary_color"),
        ({"branding": {"primary_color": "#123456;x:y"}}, "branding.primary_color"),
        ({"branding": {"logo_url": "javascript:alert(1)"}}, "branding.logo_url"),
        ({"branding": {"logo_url": "//evil.example/logo.png"}}, "branding.logo_url"),
        ({"branding": {"support_contact": "call us"}}, "branding.support_contact"),
        ({"branding": {"footer_text": "two\nlines"}}, "branding.footer_text"),
        ({"branding": {"organisation_name": "x" * 101}}, "branding.organisation_name"),
        ({"branding": {"template_dir": "/no/such/folder"}}, "branding.template_dir"),
    ]
    for sections, key in cases:
        with pytest.raises(ConfigError) as err:
            settings_from_mapping({**base, **sections})
        assert err.value.key == key, sections


def test_domain_locales_from_the_environment() -> None:
    from release.config import apply_env_overrides

    data = apply_env_overrides(
        {"app": {"demo": True, "secret_key": "s" * 32}}, {"RELEASE_I18N__DOMAIN_LOCALES": '{"example.se": "sv"}'}
    )
    assert settings_from_mapping(data).i18n.domain_locales == {"example.se": "sv"}


@pytest.mark.parametrize(
    ("locale", "approved", "subject", "verdict"),
    [
        ("en", True, "Release approved: Offert", "The administrators approved the release"),
        ("sv", False, "Frisläpp nekat: Offert", "Administratörerna har nekat frisläppet"),
        ("de", True, "Freigabe genehmigt: Offert", "Die Administration hat die Freigabe genehmigt"),
    ],
)
def test_outcome_mail_is_translated(locale: str, approved: bool, subject: str, verdict: str) -> None:
    outcome = Outcome(
        to_address="anna@example.se",
        approved=approved,
        reason="<Looks fine>",
        blocked_sender="",
        blocked_subject="Offert",
        release_url="https://release.example.com/release/tok",
        message_id="<outcome-1@release.example.com>",
    )
    msg = build_outcome(outcome, sender=SENDER, jinja_env=mail_environment(locale))
    assert msg["Subject"] == subject
    text, html = text_and_html(msg)
    assert verdict in text and html is not None and verdict in html and f'<html lang="{locale}">' in html
    assert "&lt;Looks fine&gt;" in html  # the admin's reason is escaped
