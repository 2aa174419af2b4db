"""The sender's report form refuses what it must with a page a person can read: damaged,
foreign or expired links, a failed CAPTCHA (the comment kept), an oversized comment, no CSRF
token; nothing is stored."""

from __future__ import annotations

import time
from typing import Any

import pytest

from release.db.models import Job, Report
from tests.support.snapshots import row_count
from tests.support.stack import Stack
from tests.support.visitor import report_path, submit_report


@pytest.mark.parametrize(
    ("mutate", "status", "words"),
    [
        (lambda p: p.replace("&s=", "&s=0"), 400, "damaged"),
        (lambda p: p[: p.index("&s=")], 400, "damaged"),
        (lambda p: p[:-3], 400, "damaged"),
        (lambda p: p[:-1] + ("0" if p[-1] != "0" else "1"), 400, "altered"),
        (lambda p: p.replace("n=mx1", "n=mx9"), 400, "does not know"),
    ],
)
def test_bad_links_get_a_friendly_page(stack: Stack, mutate: Any, status: int, words: str) -> None:
    path = mutate(report_path(stack, "3f0c2a9e-6b1d-4c57-9a4e-1d2b3c4d5e6f"))
    response = stack.client.get(path)
    assert response.status_code == status
    assert words in response.text and "Traceback" not in response.text
    assert response.headers["Content-Type"].startswith("text/html")


def test_expired_link_is_410(stack: Stack) -> None:
    path = report_path(stack, "3f0c2a9e-6b1d-4c57-9a4e-1d2b3c4d5e6f", issued_at=int(time.time()) - 25 * 3600)
    response = stack.client.get(path)
    assert response.status_code == 410 and "no longer kept" in response.text


def test_failed_captcha_keeps_the_comment_and_creates_nothing(stack: Stack) -> None:
    tx = stack.sim.add_message("a@partner.example", ["kim@example.com"], "Captcha")
    response = submit_report(stack.client, stack, report_path(stack, tx), "Please keep this text", solve=False)
    assert response.status_code == 400
    assert "anti-robot check did not pass" in response.text and "Please keep this text" in response.text
    assert row_count(stack, Report) == 0 and row_count(stack, Job) == 0


def test_oversized_comment_is_refused_with_a_message(stack: Stack) -> None:
    tx = stack.sim.add_message("a@partner.example", ["lee@example.com"], "Long")
    response = submit_report(stack.client, stack, report_path(stack, tx), "x" * 2001)
    assert response.status_code == 400 and "under 2000 characters" in response.text
    assert row_count(stack, Report) == 0


def test_post_without_csrf_is_refused(stack: Stack) -> None:
    tx = stack.sim.add_message("a@partner.example", ["max@example.com"], "CSRF")
    response = stack.client.post(report_path(stack, tx), data={"comment": "hi"})
    # No session cookie yet: the page says what to do about it (docs: issue 16, item 7).
    assert response.status_code == 400 and "reload the page and try again" in response.text
    assert row_count(stack, Report) == 0
