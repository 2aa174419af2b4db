"""The notification mails' Jinja environments: one per language, instance files first.

Mails are rendered in worker threads with no request, so they cannot use Flask-Babel's
per-request locale. Each language gets its own environment with its catalog installed once,
which keeps rendering thread-safe. A file in the override folder (by default
``instance/templates/mail/notification.html``) takes precedence over the built-in one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import jinja2
from babel.support import NullTranslations, Translations

from release.config import LOCALES, I18nSettings
from release.mail.brand import Brand
from release.paths import TEMPLATES, TRANSLATIONS


def mail_environment(
    locale: str, *, override_dir: str | Path | None = None, brand: Brand | None = None
) -> jinja2.Environment:
    """An autoescaping environment rendering the mail templates in ``locale``."""
    loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(str(TEMPLATES))]
    if override_dir:
        loaders.insert(0, jinja2.FileSystemLoader(str(override_dir)))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
    )
    translations: NullTranslations = Translations.load(str(TRANSLATIONS), [locale])
    env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
    env.globals["brand"] = brand or Brand()
    env.globals["locale"] = locale
    return env


def locale_for(address: str, domain_locales: Mapping[str, str], default: str) -> str:
    """The configured language of the address's domain; a subdomain inherits its parent's."""
    domain = address.rpartition("@")[2].strip().lower().rstrip(".")
    labels = domain.split(".")
    for i in range(len(labels) - 1):
        found = domain_locales.get(".".join(labels[i:]))
        if found:
            return found
    return default


class MailTemplates:
    """Picks the environment for a recipient by their domain's configured language."""

    def __init__(self, i18n: I18nSettings, *, override_dir: str | Path | None = None, brand: Brand | None = None):
        self.i18n = i18n
        self.environments = {code: mail_environment(code, override_dir=override_dir, brand=brand) for code in LOCALES}

    def locale_for(self, address: str) -> str:
        """The language a mail to ``address`` is written in."""
        return locale_for(address, self.i18n.domain_locales, self.i18n.default_locale)

    def for_address(self, address: str) -> jinja2.Environment:
        """The environment to render a mail to ``address`` with."""
        return self.environments[self.locale_for(address)]
