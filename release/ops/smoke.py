"""`flask --app app report --link URL --comment TEXT`: report a blocked message over real HTTP,
as a sender's browser does, for smoke tests and scripts.

It GETs the report link, solves the page's ALTCHA challenge with the altcha library's solver
and POSTs the form (CSRF token, comment, solution) with the page's cookie. Only ALTCHA can be
solved by a script, by design: the other providers exist to stop scripts. The service goes
through every check it has for a person (CSRF, rate limits, the solution used once).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import click
import requests

from release.captcha.altcha import solve

TIMEOUT_SECONDS = 30.0
# The service's own challenges stay near [captcha] altcha_max_number (default 100,000); a
# bound far above it keeps a wrong or hostile page from holding the solver for hours.
MAX_CHALLENGE_NUMBER = 10_000_000
MAX_PAGE_BYTES = 1 << 20
# The widget markers the report page renders per provider (templates/_captcha.html).
OTHER_WIDGETS = {"g-recaptcha": "recaptcha", "h-captcha": "hcaptcha", "cf-turnstile": "turnstile"}


class SmokeError(click.ClickException):
    """The submission could not be made; the message says at which step and why."""


@dataclass
class ReportPage:
    """What a script needs from the report form page."""

    action: str = ""
    csrf_token: str = ""
    challenge_url: str = ""
    field_name: str = "altcha"
    other_provider: str = ""


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.page = ReportPage()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "form" and found.get("method", "").lower() == "post":
            self.page.action = found.get("action", "")
        elif tag == "input" and found.get("name") == "csrf_token":
            self.page.csrf_token = found.get("value", "")
        elif tag == "altcha-widget":
            self.page.challenge_url = found.get("challengeurl", "")
            self.page.field_name = found.get("name", "altcha")
        elif tag == "div":
            classes = found.get("class", "").split()
            widget = next((OTHER_WIDGETS[c] for c in classes if c in OTHER_WIDGETS), "")
            self.page.other_provider = widget or self.page.other_provider


def parse_report_page(html: str) -> ReportPage:
    """The form's action, CSRF token and ALTCHA challenge URL as the page renders them."""
    parser = _PageParser()
    parser.feed(html)
    return parser.page


def submit_report(link: str, comment: str, *, session: requests.Session | None = None) -> str:
    """Report the message behind ``link``; returns the URL of the status page it lands on.

    Every request stays on the link's own scheme and host: the comment goes nowhere else.
    """
    http = session or requests.Session()
    page_response = http.get(link, timeout=TIMEOUT_SECONDS, stream=True)
    if page_response.status_code != 200:
        raise SmokeError(f"GET the link: HTTP {page_response.status_code} (a 400 is a bad link, a 410 an expired one)")
    page = parse_report_page(_bounded_text(page_response))
    if not page.action:
        raise SmokeError("the link shows no report form: this message has been reported already")
    if page.other_provider:
        raise SmokeError(
            f"the page uses {page.other_provider}, which a script cannot solve; use ALTCHA for smoke tests"
        )
    if not page.challenge_url or not page.csrf_token:
        raise SmokeError("the page has no ALTCHA widget or no CSRF token: is this the service's report page?")
    challenge_url = _same_origin(page_response.url, page.challenge_url, "the ALTCHA challenge")
    challenge = http.get(challenge_url, timeout=TIMEOUT_SECONDS)
    if challenge.status_code != 200:
        raise SmokeError(f"GET the ALTCHA challenge: HTTP {challenge.status_code}")
    form = {"csrf_token": page.csrf_token, "comment": comment, page.field_name: _solution(challenge)}
    posted = http.post(
        _same_origin(page_response.url, page.action, "the report form"),
        data=form,
        # As a browser sends it: Flask-WTF checks the referrer on https.
        headers={"Referer": page_response.url},
        allow_redirects=False,
        timeout=TIMEOUT_SECONDS,
    )
    if posted.status_code != 303 or "Location" not in posted.headers:
        raise SmokeError(f"POST the form: HTTP {posted.status_code} (400: CSRF, comment or CAPTCHA refused)")
    return urljoin(page_response.url, posted.headers["Location"])


def _bounded_text(response: requests.Response) -> str:
    """The page, refusing one larger than any report page (a wrong link, or a hostile host)."""
    body = b""
    for chunk in response.iter_content(64 * 1024):
        body += chunk
        if len(body) > MAX_PAGE_BYTES:
            response.close()
            raise SmokeError(f"GET the link: the page is larger than {MAX_PAGE_BYTES >> 20} MiB; is this the service?")
    return body.decode(response.encoding or "utf-8", "replace")


def _same_origin(page_url: str, target: str, what: str) -> str:
    """``target`` resolved against the page, refused when it leaves the page's scheme and host."""
    resolved = urljoin(page_url, target)
    page, there = urlsplit(page_url), urlsplit(resolved)
    if (there.scheme, there.netloc) != (page.scheme, page.netloc):
        raise SmokeError(f"{what} points at {there.scheme}://{there.netloc}, not the link's own service")
    return resolved


def _solution(challenge: requests.Response) -> str:
    """The solved challenge; anything but a plausible ALTCHA challenge is a plain error."""
    try:
        data = challenge.json()
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if int(data.get("maxNumber", 0)) > MAX_CHALLENGE_NUMBER:
            raise ValueError(f"maxNumber above {MAX_CHALLENGE_NUMBER:,}, far beyond what the service issues")
        return solve(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise SmokeError(f"the ALTCHA challenge cannot be solved: {exc}") from None


@click.command("report")
@click.option("--link", required=True, help="A signed report link (flask --app app sign-link prints one)")
@click.option("--comment", default="Smoke test: please release.", show_default=True, help="The sender's comment")
def report_command(link: str, comment: str) -> None:
    """Report a blocked message over HTTP as a sender would, solving the ALTCHA challenge."""
    try:
        status_url = submit_report(link, comment)
    except requests.RequestException as exc:
        click.echo(f"error: could not reach the service ({type(exc).__name__}: {exc})", err=True)
        sys.exit(1)
    click.echo(f"reported; status page: {status_url}")
