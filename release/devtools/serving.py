"""werkzeug's development server as demo mode runs it, without versions in ``Server``.

Its handler answers ``Server: Werkzeug/3.x Python/3.11.x`` on every response: a stranger
learns what to attack. The name stays; the versions go (``version_string`` is the hook
``http.server`` documents for this header).
"""

from __future__ import annotations

from werkzeug.serving import WSGIRequestHandler

SERVER_NAME = "sender-fp-release"


class UnversionedHandler(WSGIRequestHandler):
    """werkzeug's request handler, naming no versions in the ``Server`` header."""

    def version_string(self) -> str:
        return SERVER_NAME
