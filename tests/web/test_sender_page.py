"""The sender's report page as visitors see it: each visitor gets their own link and CSRF
token (a token works only with its own session), retention changes show at once, and each
app in a process serves its own branding. On the real stack (SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses
import re

from release import create_app
from release.config import BrandingSettings, RetentionSettings
from release.core import retention
from tests.support.stack import Stack
from tests.support.visitor import csrf_token, report_path

FORM_EXPIRED = "The form expired or came from elsewhere"


def test_the_page_token_carries_a_report_only_with_its_own_session(stack: Stack) -> None:
    """The page's token with the page's cookie is accepted by the POST, the token with
    another visitor's cookie is refused."""
    path = report_path(stack, "csrf.1@mx-1")
    first, second = stack.new_client(), stack.new_client()
    token = csrf_token(first.get(path).text)
    csrf_token(second.get(path).text)  # the second visitor has a session of their own
    refused = second.post(path, data={"csrf_token": token, "comment": "Real mail."})
    assert refused.status_code == 400 and FORM_EXPIRED in refused.text
    accepted = first.post(path, data={"csrf_token": token, "comment": "Real mail."})
    # Past the CSRF check, stopped at the CAPTCHA (none was solved here).
    assert accepted.status_code == 400 and FORM_EXPIRED not in accepted.text
    assert "The anti-robot check did not pass" in accepted.text


def test_each_visitor_sees_their_own_link_and_token(stack: Stack) -> None:
    first_path, second_path = report_path(stack, "page-first"), report_path(stack, "page-second")
    first, second = stack.new_client().get(first_path), stack.new_client().get(second_path)
    assert first.status_code == second.status_code == 200
    assert "page-first" in first.text and "page-second" not in first.text
    assert "page-second" in second.text and "page-first" not in second.text
    assert csrf_token(first.text) != csrf_token(second.text)  # two sessions, two tokens
    action = re.search(r'<form method="post" action="([^"]+)"', second.text)
    assert action and action.group(1) == second_path.replace("&", "&amp;")


def test_a_retention_change_shows_on_the_next_view(stack: Stack) -> None:
    path = report_path(stack, "page-retention")
    assert re.search(r"A copy is kept for\s+24 hours", stack.new_client().get(path).text)
    with stack.services.db.session() as session:
        values = {"short_hours": 5, "long_days": 7, "record_days": 90}
        retention.set_retention(session, values, "test", RetentionSettings())
        session.commit()
    retention.invalidate()
    assert re.search(r"A copy is kept for\s+5 hours", stack.new_client().get(path).text)


def test_two_apps_in_one_process_each_serve_their_own_branding(stack: Stack) -> None:
    """Another app in the same process (tests, or an embedding host) with other branding
    must not get this one's page, nor this one its."""
    path = report_path(stack, "page-branding") + "&lang=sv"
    assert "Other Org AB" not in stack.new_client().get(path).text
    settings = dataclasses.replace(stack.services.settings, branding=BrandingSettings(organisation_name="Other Org AB"))
    other = create_app(settings, services=dataclasses.replace(stack.services, settings=settings))
    other.config["TESTING"] = True
    assert "Other Org AB" in other.test_client().get(path).text
    assert "Other Org AB" not in stack.new_client().get(path).text
