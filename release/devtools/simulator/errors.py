"""The one error the simulated API raises: an HTTP status and a message for ``{"error": ...}``."""

from __future__ import annotations


class ApiError(Exception):
    """An error answer: HTTP ``status`` with ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
