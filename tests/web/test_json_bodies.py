"""JSON bodies the parser cannot take are bad requests (400), never server errors."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.stack import Stack

KEY = "json-bodies-api-key-0123456789"


@pytest.fixture
def stack_sections() -> dict[str, dict[str, Any]]:
    return {"api": {"keys": [KEY]}}


def test_deeply_nested_json_is_a_400(stack: Stack) -> None:
    """Found by the guard (tests/security/test_hostile_routes.py): Python's parser gives up on
    ``[[[…`` with a RecursionError, which Flask's get_json() did not count as invalid JSON."""
    response = stack.client.put("/api/v1/retention", data=b"[" * 60_000, content_type="application/json",
                                headers={"Authorization": f"Bearer {KEY}"})  # fmt: skip
    assert response.status_code == 400 and response.get_json()["error"] == "bad_request"
