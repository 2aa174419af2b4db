"""A body over the size limit (64 KiB) gets a 413 page in every area: the admin console
gave a 500, because its layout built a form that read the body again while the 413 page
was being rendered. Every route that takes a body is tried, found in the URL map."""

from __future__ import annotations

import re

import pytest
from werkzeug.routing import Rule

from tests.support.console import ADMIN, Console
from tests.support.stack import Stack, StackFactory

LIMIT = 64 * 1024
BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def sample_path(rule: Rule) -> str:
    """The rule's path with a plausible value in each variable part."""
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: "1" if m.group(1).endswith(("id", "index")) else "x", rule.rule)


def body_routes(stack: Stack) -> list[tuple[str, str]]:
    routes = []
    for rule in stack.app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) & set(BODY_METHODS)):
            routes.append((method, sample_path(rule)))
    assert any(path.startswith("/admin/") for _, path in routes)
    return routes


def signed_in(stack: Stack) -> Console:
    from release.web.admin import auth

    with stack.services.db.session() as session:
        auth.create_admin(session, ADMIN[0], ADMIN[1], "admin", actor="test")
        session.commit()
    return Console(stack)


@pytest.mark.parametrize("kind", ["form", "json", "text"])
def test_every_body_route_answers_an_oversized_body_with_413(make_stack: StackFactory, kind: str) -> None:
    stack = make_stack(api={"keys": ["api-key-0123456789abcdefghij"]})
    admin = signed_in(stack).login()
    bodies = {
        "form": ({"comment": "x" * (LIMIT + 1)}, None),
        "json": ('{"x": "' + "x" * (LIMIT + 1) + '"}', "application/json"),
        "text": ("x" * (LIMIT + 1), "text/plain"),
    }
    data, content_type = bodies[kind]
    for client in (stack.new_client(), admin):
        for method, path in body_routes(stack):
            response = client.open(path, method=method, data=data, content_type=content_type,
                                   headers={"Authorization": "Bearer api-key-0123456789abcdefghij"})  # fmt: skip
            assert response.status_code == 413, (method, path, response.status_code)
            wants_json = path.startswith(("/api/", "/gateway/"))
            if wants_json:  # the APIs' one error shape (release/web/errors.py api_error)
                assert response.get_json()["error"] == "too_large"
            else:
                assert "Too much data" in response.text
