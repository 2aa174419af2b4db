"""Pages rendered once with markers in place of their per-request values, then filled in.

The report-link page is the service's hottest HTML page (every reject message carries a
link, and mail scanners open them too). Its first view is the same for every visitor who
sees it in the same language and under the same retention, except for a few values: the
link's node, date and message id, the form's action, the CSRF token and the query of the
language links. Rendering the template with Jinja on every visit was a quarter of the
page's cost (bench/request_cpu.py). Here it is rendered once per key, with a marker for
each such value; a visit escapes its values and joins strings.

Values are escaped as Jinja escapes them (markupsafe), character by character, so a filled
page is byte for byte the page Jinja would have rendered (tests/test_prerender.py checks).
A marker must reach the output unchanged: templates print these values as they are, never
through a filter.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Hashable, Mapping
from typing import Any, Generic, TypeVar

from flask import render_template
from markupsafe import escape

Values = TypeVar("Values")

# NUL never occurs in a template's text, and markupsafe leaves it alone.
_MARK = "\x00"
_MARKER = re.compile(f"{_MARK}([a-z_]+){_MARK}")
MAX_KEYS = 32  # keys are (language, retention ...): a handful in practice; a bound all the same


class Prerendered(Generic[Values]):
    """One template whose context ``visit`` is a dataclass of per-request strings."""

    def __init__(self, template: str, values: type[Values]) -> None:
        self.template = template
        self.values = values
        self.names = tuple(field.name for field in dataclasses.fields(values))  # type: ignore[arg-type]
        self._pages: dict[Hashable, tuple[str, tuple[tuple[str, str], ...]]] = {}

    def render(self, key: Hashable, visit: Values, context: Callable[[], Mapping[str, Any]]) -> str:
        """The template for ``visit``. ``context`` gives the rest of the template's context,
        the same for every call with ``key``; it is called only when ``key`` is new."""
        found = self._pages.get(key)
        if found is None:
            found = self._prerender(context())
            if len(self._pages) >= MAX_KEYS:
                self._pages.clear()
            self._pages[key] = found  # one assignment: a race renders twice, harmlessly
        head, pieces = found
        escaped = {name: escape(getattr(visit, name)) for name in self.names}
        out = [head]
        for name, text in pieces:
            out.append(escaped[name])
            out.append(text)
        return "".join(out)

    def _prerender(self, context: Mapping[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
        markers = self.values(**{name: f"{_MARK}{name}{_MARK}" for name in self.names})
        parts = _MARKER.split(render_template(self.template, visit=markers, **context))
        head, rest = parts[0], parts[1:]
        pieces = tuple((rest[i], rest[i + 1]) for i in range(0, len(rest), 2))
        unused = set(self.names) - {name for name, _ in pieces}
        if unused or any(_MARK in text for text in (head, *(text for _, text in pieces))):
            raise ValueError(f"{self.template}: markers lost or changed in rendering ({sorted(unused)})")
        return head, pieces
