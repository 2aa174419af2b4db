"""The report form's first view is prerendered (release/prerender.py): what a visitor gets
must be exactly what Jinja renders for their values, and nobody's values may leak into
another visitor's page. On the real stack (SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses
import re
import time

import jinja2
import pytest
from flask import Flask, render_template, request, url_for

from release import create_app
from release.config import BrandingSettings, RetentionSettings
from release.core import retention
from release.web.database import format_datetime
from release.web.forms import ReportForm
from release.web.i18n import language_prefix
from release.web.prerender import Prerendered
from release.web.sender import FormVisit
from tests.conftest import Stack
from tests.integration.helpers import csrf_token, report_path

MESSAGE_ID = "prerender.1@mx-1"
# Extra query parameters are the visitor's to choose; the form's action and the language links
# carry them back, escaped.
AWKWARD_QUERY = "&x=<b>\"'"


def _jinja_render(stack: Stack, path: str, headers: dict[str, str], **values: str) -> str:
    """The form page rendered by Jinja for these values, as the view rendered it before
    prerendering (same template, same context)."""
    app, svc = stack.app, stack.services
    with app.test_request_context(path, headers=headers):
        app.preprocess_request()  # the request's hooks, as in a request
        visit = FormVisit(action=request.full_path, language_prefix=language_prefix(), **values)
        form = ReportForm()
        form.limit_comment(svc.settings.app.max_comment_length)
        with svc.db.session() as session:
            short_hours = svc.ctx.retention(session).short_hours
        return render_template(
            "report_form.html", visit=visit, form=form, captcha_error=None, captcha=svc.captcha,
            challenge_url=url_for("sender.altcha_challenge"), short_hours=short_hours,
            config_max_comment=svc.settings.app.max_comment_length,
        )  # fmt: skip


@pytest.mark.parametrize("language", ["en", "sv"])
def test_the_prerendered_page_is_byte_for_byte_what_jinja_renders(stack: Stack, language: str) -> None:
    issued = int(time.time()) - 60
    path = report_path(stack, MESSAGE_ID, issued_at=issued) + f"&lang={language}{AWKWARD_QUERY}"
    headers = {"Accept-Language": language}
    for _ in range(2):  # the first visit prerenders, the second only fills in
        page = stack.new_client().get(path, headers=headers)
        assert page.status_code == 200
        values = {"csrf_token": csrf_token(page.text), "node": "mx1", "message_id": MESSAGE_ID}
        assert page.text == _jinja_render(stack, path, headers, issued=format_datetime(issued), **values)
    assert MESSAGE_ID in page.text and "<b>" not in page.text


def test_each_visitor_sees_their_own_link_and_token(stack: Stack) -> None:
    first_path, second_path = report_path(stack, "prerender-first"), report_path(stack, "prerender-second")
    first, second = stack.new_client().get(first_path), stack.new_client().get(second_path)
    assert first.status_code == second.status_code == 200
    assert "prerender-first" in first.text and "prerender-second" not in first.text
    assert "prerender-second" in second.text and "prerender-first" not in second.text
    assert csrf_token(first.text) != csrf_token(second.text)  # two sessions, two tokens
    action = re.search(r'<form method="post" action="([^"]+)"', second.text)
    assert action and action.group(1) == second_path.replace("&", "&amp;")


def test_a_retention_change_shows_on_the_next_view(stack: Stack) -> None:
    path = report_path(stack, "prerender-retention")
    assert re.search(r"A copy is kept for\s+24 hours", stack.new_client().get(path).text)
    with stack.services.db.session() as session:
        values = {"short_hours": 5, "long_days": 7, "record_days": 90}
        retention.set_retention(session, values, "test", RetentionSettings())
        session.commit()
    retention.invalidate()
    assert re.search(r"A copy is kept for\s+5 hours", stack.new_client().get(path).text)


def test_two_apps_in_one_process_each_serve_their_own_branding(stack: Stack) -> None:
    """The prerendered page belongs to its app: another app in the same process (tests, or an
    embedding host) with other branding must not get this one's page, nor this one its."""
    path = report_path(stack, "prerender-branding") + "&lang=sv"
    assert "Other Org AB" not in stack.new_client().get(path).text  # prerendered first, unbranded
    settings = dataclasses.replace(stack.services.settings, branding=BrandingSettings(organisation_name="Other Org AB"))
    other = create_app(settings, services=dataclasses.replace(stack.services, settings=settings))
    other.config["TESTING"] = True
    assert "Other Org AB" in other.test_client().get(path).text
    assert "Other Org AB" not in stack.new_client().get(path).text


def test_a_template_that_changes_a_value_is_refused() -> None:
    app = Flask(__name__)
    app.jinja_env.loader = jinja2.DictLoader({"bad.html": "<p>{{ visit.node | upper }}</p>"})
    page = Prerendered("bad.html", FormVisit)
    visit = FormVisit(action="/", csrf_token="t", node="mx1", issued="now", message_id="m", language_prefix="/?")
    with app.test_request_context("/"), pytest.raises(ValueError, match="markers lost"):
        page.render("key", visit, dict)
