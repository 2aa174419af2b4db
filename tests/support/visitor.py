"""Helpers that act as the sender and the recipient would, through the real web app."""

from __future__ import annotations

import re
import time
from email.message import EmailMessage
from urllib.parse import urlsplit

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from release.core import links
from release.devtools.mailcapture import text_and_html
from tests.support.altcha import solve_altcha
from tests.support.stack import Stack

CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
RELEASE_URL_RE = re.compile(r"https?://\S+/release/([A-Za-z0-9_-]{43})")


def report_path(stack: Stack, message_id: str, *, node: str = "mx1", issued_at: int | None = None) -> str:
    """The path + query of a correctly signed report link."""
    settings = stack.services.settings
    issued = int(time.time()) if issued_at is None else issued_at
    url = links.build_report_url(settings.app.public_url, settings.links.keys[0], node, message_id, issued)
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def csrf_token(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


def submit_report(
    client: FlaskClient, stack: Stack, path: str, comment: str = "We met at the fair last week.", *, solve: bool = True
) -> TestResponse:
    """Open the report link, fill the form, pass the CAPTCHA (like the widget), submit."""
    page = client.get(path)
    assert page.status_code == 200, page.text
    data = {"csrf_token": csrf_token(page.text), "comment": comment}
    if solve:
        captcha = stack.services.captcha
        data["altcha"] = solve_altcha(client.get("/captcha/altcha-challenge").get_json())
        assert captcha.field_name == "altcha"
    return client.post(path, data=data)


def release_token_from(message: EmailMessage) -> str:
    """The release token in a captured notification's text part."""
    text, _html = text_and_html(message)
    match = RELEASE_URL_RE.search(text)
    assert match, text
    return match.group(1)


def wait_until(predicate: object, timeout: float = 5.0) -> bool:
    """Poll ``predicate`` (a callable) until true or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False
