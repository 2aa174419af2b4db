"""Text from strangers as pages show it: characters that change how text displays are made
visible, and the page says so.

Bidi controls (U+202E and its kind) and the other format characters (Unicode category Cf:
zero-width spaces and joiners, tag characters, ...) can make text display as something it
is not, so that "gnp.exe" reads "exe.png"; line and paragraph separators (U+2028, U+2029)
and control characters other than tab and line breaks hide or break text too. Each becomes
U+FFFD, and the text is wrapped in an element whose title says characters were replaced.
The notification mail strips the same characters (release/mail). One Jinja filter,
``untrusted``, is applied wherever a page shows a stranger's text.

Cf also holds joiners that some scripts and emoji sequences use (U+200C, U+200D); they show
as U+FFFD too: a visible mark is a small price next to a disguised file name.
"""

from __future__ import annotations

import unicodedata

from flask import Flask
from flask_babel import gettext
from markupsafe import Markup, escape

MARK = "\ufffd"
_HIDING = frozenset({"Cf", "Zl", "Zp", "Cs"})
_KEPT_CONTROLS = frozenset("\t\n\r")


def _hides(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category in _HIDING or (category == "Cc" and ch not in _KEPT_CONTROLS)


def neutralise(text: str) -> str:
    """``text`` with every character that could disguise it replaced by U+FFFD."""
    if text.isprintable():  # the common case, at C speed: no Cc, Cf, Zl, Zp, Cs in it
        return text
    return "".join(MARK if _hides(ch) else ch for ch in text)


def untrusted_filter(value: object) -> Markup:
    """A stranger's text for a page: escaped, neutralised, and marked where it was changed."""
    text = "" if value is None else str(value)
    shown = neutralise(text)
    if shown == text:
        return escape(text)
    note = gettext("Hidden formatting characters in this text were replaced with %(mark)s.", mark=MARK)
    return Markup('<span class="neutralised" title="{}">{}</span>').format(note, shown)


def register(app: Flask) -> None:
    """Install the ``untrusted`` template filter."""
    app.add_template_filter(untrusted_filter, "untrusted")
