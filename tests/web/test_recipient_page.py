"""The recipient's release page for a token that matches no copy."""

from __future__ import annotations

from tests.support.stack import Stack


def test_unknown_release_token_is_404(stack: Stack) -> None:
    assert stack.client.get("/release/" + "A" * 43).status_code == 404
    assert stack.client.get("/release/short").status_code == 404
    assert stack.client.post("/release/" + "A" * 43, data={}).status_code in (400, 404)
