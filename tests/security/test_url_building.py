"""Pages build their URLs from verified values only. The sender's status page passed the
whole query string to ``url_for``: ``endpoint`` or ``_method`` gave a 500, and ``_external``,
``_scheme`` or ``_anchor`` changed the URL the page's script polls. The same goes for the
report form, the admin pager and the language links: extra parameters go nowhere."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest

from release.core import history
from release.db.models import utcnow
from release.web.admin import auth
from tests.support.console import ADMIN, Console, seed_report
from tests.support.stack import Stack, StackFactory
from tests.support.visitor import report_path, submit_report

EXTRA = [
    "endpoint=web.index",
    "_method=POST",
    "_external=1&_scheme=javascript",
    "_anchor=x",
    "_scheme=https",
    "values=1",
    "foo=bar",
]
LANGUAGE_LINK = r'<a href="([^"]*)" hreflang='


def hrefs(page: str, pattern: str) -> list[str]:
    return [html.unescape(u) for u in re.findall(pattern, page)]


def reported(stack: Stack) -> str:
    """A report link whose report is stored (its page shows the status)."""
    tx = stack.sim.add_message("anna@partner.example", ["alice@example.com"], "Hello")
    path = report_path(stack, tx)
    assert submit_report(stack.new_client(), stack, path).status_code == 303
    return path


@pytest.mark.parametrize("extra", EXTRA)
def test_the_status_page_ignores_extra_parameters(make_stack: StackFactory, extra: str) -> None:
    stack = make_stack()
    path = reported(stack)
    page = stack.new_client().get(f"{path}&{extra}")
    assert page.status_code == 200, page.text
    (status_url,) = hrefs(page.text, r'data-status-url="([^"]*)"')
    assert status_url == path.replace("/report?", "/report/status?")
    for link in hrefs(page.text, LANGUAGE_LINK):
        assert dict(parse_qsl(urlsplit(link).query)).keys() == {"n", "m", "t", "s", "lang"}, link


@pytest.mark.parametrize("extra", EXTRA)
def test_the_report_form_posts_to_the_verified_link(make_stack: StackFactory, extra: str) -> None:
    stack = make_stack()
    tx = stack.sim.add_message("anna@partner.example", ["alice@example.com"], "Hello")
    path = report_path(stack, tx)
    client = stack.new_client()
    page = client.get(f"{path}&{extra}")
    assert page.status_code == 200, page.text
    (action,) = hrefs(page.text, r'<form method="post" action="([^"]*)"')
    assert action == path
    posted = submit_report(client, stack, f"{path}&{extra}")
    assert posted.status_code == 303 and posted.headers["Location"] == path


@pytest.mark.parametrize("extra", EXTRA)
def test_the_admin_pager_keeps_only_the_known_filter_fields(make_stack: StackFactory, extra: str) -> None:
    stack = make_stack()
    with stack.services.db.session() as session:
        auth.create_admin(session, ADMIN[0], ADMIN[1], "admin", actor="test")
        for i in range(60):
            seed_report(session, created_at=utcnow() - timedelta(minutes=i), subject=f"Bulk {i}")
            history.audit(session, "test", "test.entry", f"entry:{i}")
        session.commit()
    client = Console(stack).login()
    page = client.get(f"/admin/reports?subject=Bulk&status=notified&{extra}")
    assert page.status_code == 200, page.text
    (following,) = hrefs(page.text, r'rel="next" href="([^"]*)"')
    assert urlsplit(following).path == "/admin/reports"
    assert dict(parse_qsl(urlsplit(following).query)) == {"subject": "Bulk", "status": "notified", "page": "2"}
    second = client.get(following)
    (previous,) = hrefs(second.text, r'rel="prev" href="([^"]*)"')
    assert dict(parse_qsl(urlsplit(previous).query)) == {"subject": "Bulk", "status": "notified", "page": "1"}
    audit = client.get(f"/admin/audit?{extra}")
    assert audit.status_code == 200, audit.text
    (following,) = hrefs(audit.text, r'rel="next" href="([^"]*)"')
    assert following == "/admin/audit?page=2"


def test_language_links_keep_the_link_fields_only(make_stack: StackFactory) -> None:
    stack = make_stack()
    tx = stack.sim.add_message("anna@partner.example", ["alice@example.com"], "Hello")
    path = report_path(stack, tx)
    page = stack.new_client().get(f"{path}&_anchor=x&foo=bar&lang=de")
    links = hrefs(page.text, LANGUAGE_LINK)
    assert sorted(links) == sorted([f"{path}&lang=en", f"{path}&lang=sv"])
    index = stack.new_client().get("/?foo=bar&_external=1")
    assert sorted(hrefs(index.text, LANGUAGE_LINK)) == ["/?lang=de", "/?lang=sv"]
