"""Languages: the page's locale (query, cookie, Accept-Language) and a switcher without JavaScript.

Choosing a language is a display preference: ``?lang=sv`` on any page shows it in Swedish and
remembers the choice in a cookie. No server state changes, so a GET may do it.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from babel import Locale
from babel.support import NullTranslations
from flask import Flask, Response, current_app, g, has_app_context, request
from flask_babel import Babel, get_locale, get_translations

from release.config import LOCALES, Settings
from release.core import links
from release.paths import TRANSLATIONS

COOKIE = "lang"
COOKIE_MAX_AGE = 365 * 24 * 3600
# Not translated yet: a half-translated console would be worse than an English one.
ENGLISH_ONLY = frozenset({"admin"})
# Endonyms: a visitor who cannot read the current language still finds their own.
NAMES = {"en": "English", "sv": "Svenska", "de": "Deutsch"}


# Parsed once: Flask-Babel parses whatever the selector returns, unless it is a Locale already.
_PARSED = {code: Locale.parse(code) for code in LOCALES}


def select_locale() -> Locale:
    """An explicit ``lang`` query wins, then the cookie, then the browser's Accept-Language."""
    return _PARSED[_locale_code()]


def _locale_code() -> str:
    if request.blueprint in ENGLISH_ONLY:
        return "en"
    asked = request.args.get(COOKIE, "")
    if asked in LOCALES:
        return asked
    remembered = request.cookies.get(COOKIE, "")
    if remembered in LOCALES:
        return remembered
    default: str = current_app.config["BABEL_DEFAULT_LOCALE"]
    return request.accept_languages.best_match(LOCALES, default=default) or default


def current_locale() -> str:
    """The language of this response (the default outside a request)."""
    locale = get_locale()
    return str(locale) if locale is not None else "en"


def language_prefix() -> str:
    """This page's URL up to the ``lang`` value: the path and, of the query, only a report
    link's fields (the one query a page here needs to stay itself); other parameters go nowhere."""
    args = request.args
    kept = urlencode([(name, args[name]) for name in links.FIELDS if name in args])
    path = quote(request.path)
    return f"{path}?{kept}&" if kept else f"{path}?"


def language_links() -> list[dict[str, object]]:
    """The switcher: this page in each language (the query kept, ``lang`` replaced)."""
    current = current_locale()
    prefix = language_prefix()
    return [
        {"code": code, "name": NAMES[code], "url": f"{prefix}{COOKIE}={code}", "current": code == current}
        for code in LOCALES
    ]


def _remember_choice(response: Response) -> Response:
    asked = request.args.get(COOKIE, "")
    if asked in LOCALES and request.cookies.get(COOKIE) != asked:
        response.set_cookie(
            COOKIE, asked, max_age=COOKIE_MAX_AGE, secure=request.is_secure, httponly=True, samesite="Lax"
        )
    if "Vary" in response.headers:
        response.vary.update(("Accept-Language", "Cookie"))
    else:  # most pages: no need to parse a Vary header that is not there
        response.headers["Vary"] = "Accept-Language, Cookie"
    return response


def translations() -> NullTranslations:
    """This request's catalogue, looked up once per request: Flask-Babel's template callables
    look it up again for every string (locale, cache key), a good share of a page's render."""
    if not has_app_context():
        return get_translations()
    found: NullTranslations | None = g.get("release_translations")
    if found is None:
        found = g.release_translations = get_translations()
    return found


def register(app: Flask, settings: Settings) -> None:
    """Flask-Babel with our selector, the switcher helpers and the preference cookie."""
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(TRANSLATIONS)
    app.config["BABEL_DEFAULT_LOCALE"] = settings.i18n.default_locale
    Babel(app, locale_selector=select_locale)
    # The same callables Flask-Babel installs, on the per-request catalogue (nothing in a
    # request changes its locale after the first string: no force_locale in views).
    app.jinja_env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=lambda s: translations().ugettext(s),
        ngettext=lambda s, p, n: translations().ungettext(s, p, n),
        newstyle=True,
        pgettext=lambda c, s: translations().upgettext(c, s),
        npgettext=lambda c, s, p, n: translations().unpgettext(c, s, p, n),
    )
    app.add_template_global(language_links, "language_links")
    app.add_template_global(current_locale, "current_locale")
    app.after_request(_remember_choice)
