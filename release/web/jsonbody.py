"""JSON bodies: a document nested too deep to parse is bad input, not a server error.

Python's parser gives up on deep nesting (``[[[[…`` well inside the 64 KiB body limit) with a
RecursionError, which ``request.get_json()`` does not treat as invalid JSON. Raised as a
ValueError it is: ``get_json(silent=True)`` answers None and ``get_json()`` a 400.
"""

from __future__ import annotations

from typing import Any

from flask.json.provider import DefaultJSONProvider


class JsonProvider(DefaultJSONProvider):
    """Flask's JSON provider, with deep nesting refused as invalid JSON."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Parse ``s``; ValueError for anything that is not a usable JSON document."""
        try:
            return super().loads(s, **kwargs)
        except RecursionError as exc:
            raise ValueError("JSON nested too deeply") from exc
