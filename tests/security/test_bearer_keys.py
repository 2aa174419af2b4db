"""The three endpoints that take a bearer key (the API's admin endpoints, the gateway's
allow-list query, /metrics) read it by the same rules and answer 401 with their realm."""

from __future__ import annotations

import secrets

import pytest

from tests.support.stack import StackFactory

KEY = secrets.token_urlsafe(32)
ENDPOINTS = {
    "api": "/api/v1/retention",
    "gateway": "/gateway/v1/allowed?recipient=r@example.com&sender=s@partner.example",
    "metrics": "/metrics",
}
ACCEPTED = [f"Bearer {KEY}", f"bearer {KEY}", f"BEARER  {KEY} "]
REFUSED = [None, "Bearer", "Bearer ", f"Basic {KEY}", f"Bearer {KEY}x", f"Bearer {KEY[:-1]}", f"Token {KEY}", KEY]


@pytest.mark.parametrize("realm", list(ENDPOINTS))
def test_one_rule_set_for_every_bearer_endpoint(make_stack: StackFactory, realm: str) -> None:
    stack = make_stack(api={"keys": [KEY]}, policy={"allowlist_keys": [KEY]}, metrics={"token": KEY})
    path = ENDPOINTS[realm]
    for header in ACCEPTED:
        assert stack.client.get(path, headers={"Authorization": header}).status_code == 200, header
    for header in REFUSED:
        response = stack.client.get(path, headers={"Authorization": header} if header is not None else {})
        assert response.status_code == 401, header
        assert response.headers["WWW-Authenticate"] == f'Bearer realm="{realm}"'
