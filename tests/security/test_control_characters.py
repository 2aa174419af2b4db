"""Control characters are refused at the edge with a 400 in plain words, before any view
runs: NUL in a query string, a form or a JSON body reached PostgreSQL and gave a 500 (and a
report comment did so after the CAPTCHA was used up). Line breaks and tabs stay allowed in
bodies (a comment has several lines); a URL has no use for any control character. On
SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from release.db.models import Report
from release.web import input_guard
from tests.support.altcha import solve_altcha
from tests.support.console import ADMIN, Console
from tests.support.stack import Stack, StackFactory
from tests.support.visitor import csrf_token, report_path

REFUSED = "control characters"  # in the plain-words message of the 400
HOSTILE = ["\x00", "a\x00b", "\x1b[31m", "\x7f", "\x85", "\x08"]


def reports(stack: Stack) -> int:
    with stack.services.db.session() as session:
        return session.scalar(select(func.count()).select_from(Report)) or 0


def console(stack: Stack) -> Console:
    from release.web.admin import auth

    with stack.services.db.session() as session:
        auth.create_admin(session, ADMIN[0], ADMIN[1], "admin", actor="test")
        session.commit()
    return Console(stack)


@pytest.mark.parametrize("value", HOSTILE)
def test_the_sign_in_form_refuses_control_characters(make_stack: StackFactory, value: str) -> None:
    stack = make_stack()
    client = stack.new_client()
    page = client.get("/admin/login")
    response = client.post("/admin/login", data={"csrf_token": csrf_token(page.text), "username": f"alice{value}",
                                                 "password": "whatever it is"})  # fmt: skip
    assert response.status_code == 400, response.text
    assert REFUSED in response.text and "text/html" in response.content_type


def test_a_comment_with_nul_is_refused_before_the_captcha_is_used(make_stack: StackFactory) -> None:
    stack = make_stack()
    tx = stack.sim.add_message("anna@partner.example", ["alice@example.com"], "Hello")
    path = report_path(stack, tx)
    client = stack.new_client()
    token = csrf_token(client.get(path).text)
    solution = solve_altcha(client.get("/captcha/altcha-challenge").get_json())
    refused = client.post(path, data={"csrf_token": token, "comment": "Hi\x00there", "altcha": solution})
    assert refused.status_code == 400 and REFUSED in refused.text
    assert reports(stack) == 0
    # The solution was not spent on the refused request: the corrected form goes through with it.
    comment = "Line one\r\nLine two\twith a tab."
    accepted = client.post(path, data={"csrf_token": token, "comment": comment, "altcha": solution})
    assert accepted.status_code == 303, accepted.text
    with stack.services.db.session() as session:
        assert session.scalar(select(Report.comment)) == "Line one\r\nLine two\twith a tab."


@pytest.mark.parametrize("field", ["sender", "recipient", "subject", "message_id", "status", "date_from"])
def test_admin_search_fields_refuse_control_characters(make_stack: StackFactory, field: str) -> None:
    stack = make_stack()
    client = console(stack).login()
    for value in ("%00", "x%0d%0ay", "%1b"):
        response = client.get(f"/admin/reports?{field}={value}")
        assert response.status_code == 400 and REFUSED in response.text, (field, value)
    assert client.get(f"/admin/reports?{field}=plain").status_code == 200


def test_the_allow_list_query_refuses_control_characters_as_json(make_stack: StackFactory) -> None:
    stack = make_stack(policy={"allowlist_keys": ["gateway-key-0123456789abcdef"]})
    client = stack.new_client()
    headers = {"Authorization": "Bearer gateway-key-0123456789abcdef"}
    for query in ("recipient=a%00@example.com&sender=b@example.org", "recipient=a@example.com&sender=%00",
                  "recipient%00=x&recipient=a@example.com&sender=b@example.org"):  # fmt: skip
        response = client.get(f"/gateway/v1/allowed?{query}", headers=headers)
        assert response.status_code == 400 and response.is_json, query
        assert REFUSED in response.json["message"]
    fine = client.get("/gateway/v1/allowed?recipient=a@example.com&sender=b@example.org", headers=headers)
    assert fine.status_code == 200 and fine.json == {"allowed": False}


JSON_BODIES = [
    '{"short_hours": 1, "long_days": 7, "record_days": 90, "x": "\\u0000"}',
    '{"short_hours\\u0000": 1}',
    '["\\ud800"]',
    '{"a": [{"b": ["\\u001b"]}]}',
]


@pytest.mark.parametrize("body", JSON_BODIES)
def test_json_bodies_with_control_characters_or_lone_surrogates_are_refused(
    make_stack: StackFactory, body: str
) -> None:
    stack = make_stack()
    response = stack.new_client().put("/api/v1/retention", data=body, content_type="application/json")
    assert response.status_code == 400 and response.is_json and REFUSED in response.json["message"]


def test_a_path_with_control_characters_is_refused(make_stack: StackFactory) -> None:
    stack = make_stack()
    for path in ("/release/abc%00def", "/report%0d%0a", "/admin/reports%00"):
        response = stack.new_client().get(path)
        assert response.status_code == 400 and REFUSED in response.text, path


def test_what_is_refused_and_what_passes() -> None:
    """URLs: every control character (C0, DEL, C1) and lone surrogates. Bodies: the same,
    except tab and line breaks. Format characters (bidi) pass: pages neutralise them."""
    for ch in ("\x00", "\x01", "\x1f", "\x7f", "\x80", "\x9f", "\ud800", "\udfff"):
        assert input_guard.refused_in_url(f"a{ch}b") and input_guard.refused_in_body(f"a{ch}b"), repr(ch)
    for ch in ("\t", "\n", "\r"):
        assert input_guard.refused_in_url(ch) and not input_guard.refused_in_body(ch)
    for text in ("plain", "\u202egnp.exe", "Grüße \U0001f600", "\ufffd", "a\u2028b", "\u00a0"):
        assert not input_guard.refused_in_url(text) and not input_guard.refused_in_body(text)


def test_invalid_utf8_arrives_as_replacement_characters_and_is_stored(make_stack: StackFactory) -> None:
    """werkzeug decodes with errors="replace": invalid UTF-8 and encoded surrogates become
    U+FFFD, which every database stores; nothing to refuse."""
    stack = make_stack()
    client = console(stack).login()
    for value in ("%ff%fe", "%ed%a0%80", "%c3"):
        assert client.get(f"/admin/reports?subject={value}").status_code == 200


def test_json_nested_beyond_the_parsers_depth_is_a_400(make_stack: StackFactory) -> None:
    key = "api-key-0123456789abcdefghij"
    stack = make_stack(api={"keys": [key]})
    body = "[" * 30_000 + "]" * 30_000  # under the 64 KiB limit; Python's parser gives up on it
    response = stack.new_client().put("/api/v1/retention", data=body, content_type="application/json",
                                      headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    assert response.status_code == 400 and response.is_json
