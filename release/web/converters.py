"""The ``id`` URL converter: a row id as the schema stores it, or no match (404).

werkzeug's ``int`` takes any number of digits; one past the 32-bit range reached the
database and gave a 500 (PostgreSQL refuses it, SQLite overflows at 64 bits).
"""

from __future__ import annotations

import re

from flask import Flask
from werkzeug.routing import BaseConverter, ValidationError

MAX_ID = 2**31 - 1  # ids are 32-bit integers in the schema
_ID = r"[1-9][0-9]{0,9}"


def parse_id(text: str | None) -> int | None:
    """``text`` as a row id (the converter's rule), or None."""
    if text is None or not re.fullmatch(_ID, text) or int(text) > MAX_ID:
        return None
    return int(text)


class IdConverter(BaseConverter):
    """Canonical decimal from 1 to 2**31 - 1: no sign, no leading zero, at most ten digits."""

    regex = _ID
    weight = 50  # as werkzeug's int: a number outranks a free-text part

    def to_python(self, value: str) -> int:
        number = parse_id(value)
        if number is None:
            raise ValidationError()
        return number

    def to_url(self, value: int) -> str:
        return str(int(value))


def register(app: Flask) -> None:
    """Make ``<id:name>`` available to the routes (before any blueprint is registered)."""
    app.url_map.converters["id"] = IdConverter
