"""Refuse control characters and oversized bodies at the edge, before any view, CSRF check,
rate limit, CAPTCHA or database sees them.

PostgreSQL cannot store NUL, and no field of this service has a use for other control
characters; letting them in turned into 500s deep inside views (after a CAPTCHA was spent).
What is refused, deliberately:

- in the URL (path, query names and values): every control character (C0, DEL, C1) and
  lone surrogates. Nothing in a URL here is multi-line;
- in form and JSON bodies (names and values): the same, except tab, LF and CR, because a
  comment or a reason may have several lines.

Format characters (bidi controls and the like) are allowed: they are real text in some
scripts, and pages neutralise them when they show a stranger's text (web/untrusted.py).
Invalid UTF-8 never arrives: werkzeug decodes with errors="replace", so it becomes U+FFFD,
which every database stores. Lone surrogates can arrive only through JSON's ``\\udXXX``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from flask import Flask, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext
from werkzeug.exceptions import RequestEntityTooLarge

from release.web.errors import render_error

_URL_REFUSED = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_BODY_REFUSED = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def refused_in_url(text: str) -> bool:
    """Whether ``text`` may not appear in a path or query string."""
    return _URL_REFUSED.search(text) is not None


def refused_in_body(text: str) -> bool:
    """Whether ``text`` may not appear in a form field or a JSON string (tab and line breaks may)."""
    return _BODY_REFUSED.search(text) is not None


def _pairs_refused(pairs: Iterable[tuple[str, list[str]]], pattern: re.Pattern[str]) -> bool:
    return any(pattern.search(name) or any(pattern.search(v) for v in values) for name, values in pairs)


def _json_refused(document: object) -> bool:
    """Walk the parsed document without recursion (its depth is the sender's choice)."""
    pending = [document]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if refused_in_body(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _refusal() -> str | None:
    """Why this request is refused, or None to let it through."""
    if refused_in_url(request.path) or _pairs_refused(request.args.lists(), _URL_REFUSED):
        return gettext(
            "The web address contains control characters (invisible codes such as NUL or a line break), "
            "which this service does not accept. Please use the link as you received it."
        )
    refused = request.mimetype in FORM_TYPES and _pairs_refused(request.form.lists(), _BODY_REFUSED)
    if not refused and request.is_json:
        # Cached: the view reads the same parse. Unparsable JSON (deep nesting included, see
        # web/jsonbody.py) is None here and the view's own 400.
        refused = _json_refused(request.get_json(silent=True))
    if refused:
        return gettext(
            "The text you sent contains control characters (invisible codes such as NUL), which this "
            "service does not accept. Please remove them and send it again."
        )
    return None


def _guard() -> ResponseReturnValue | None:
    limit = request.max_content_length
    if limit is not None and (request.content_length or 0) > limit:
        # Said up front: refused whatever the type of body and whether or not a view reads it.
        raise RequestEntityTooLarge()
    reason = _refusal()
    return None if reason is None else render_error(400, reason)


def init_app(app: Flask) -> None:
    """Run the check before every other request hook that reads input."""
    app.before_request(_guard)
