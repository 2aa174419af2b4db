"""`flask --app app report` against a hostile (or broken) server. The operator
expects a bounded run, a one-line error, and the comment going only to the link's service."""

from __future__ import annotations

import hashlib
import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from release.ops.smoke import report_command
from tests.support.tls import needs_openssl, self_signed

COMMENT = "Private-comment-4e1f: please release"
ROOT = Path(__file__).resolve().parents[2]


def page(action: str = "/post", challenge: str = "/challenge") -> str:
    return (
        f'<form method="post" action="{action}"><input name="csrf_token" value="tok">'
        f'<altcha-widget challengeurl="{challenge}" name="altcha"></altcha-widget></form>'
    )


GOOD_CHALLENGE = {
    "algorithm": "SHA-256",
    "challenge": hashlib.sha256(b"s3").hexdigest(),
    "salt": "s",
    "maxNumber": 10,
    "signature": "x",
}  # solved by 3


class Hostile:
    """A WSGI app: ``routes`` maps a path to a function of the request returning a Response."""

    def __init__(self, routes: dict[str, Callable[[Request], Response]]) -> None:
        self.routes = routes
        self.forms: list[dict[str, str]] = []

    def __call__(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        if request.method == "POST":
            self.forms.append(request.form.to_dict())
        handler = self.routes.get(request.path, lambda _r: Response("no", status=404))
        return handler(request)(environ, start_response)


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    servers = []

    def start(app: Any, context: ssl.SSLContext | None = None) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=context)
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        servers.append(server)
        return f"{'https' if context else 'http'}://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def report(link: str) -> Any:
    return CliRunner().invoke(report_command, ["--link", link, "--comment", COMMENT])


def html(text: str) -> Callable[[Request], Response]:
    return lambda _r: Response(text, mimetype="text/html")


def as_json(body: Any) -> Callable[[Request], Response]:
    return lambda _r: Response(json.dumps(body), mimetype="application/json")


def test_a_challenge_with_a_huge_max_number_does_not_spin_for_hours(serve: Callable[..., str]) -> None:
    # The 30 s timeout covers each request, not the solver: maxNumber 10**12 with no solution
    # keeps the command at 100 % CPU for days. The service's own altcha_max_number is ~1e5.
    challenge = {**GOOD_CHALLENGE, "challenge": "f" * 64, "maxNumber": 10**12}
    base = serve(Hostile({"/link": html(page()), "/challenge": as_json(challenge)}))
    code = f"from release.ops.smoke import submit_report\nsubmit_report({base + '/link'!r}, 'c')"
    try:
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, timeout=20)
    except subprocess.TimeoutExpired:  # subprocess.run killed the child
        pytest.fail("report was still solving a hostile challenge after 20 s")


def test_a_303_without_location_is_an_error_line_not_a_traceback(serve: Callable[..., str]) -> None:
    base = serve(Hostile({"/link": html(page()), "/challenge": as_json(GOOD_CHALLENGE),
                          "/post": lambda _r: Response(status=303)}))  # fmt: skip
    result = report(base + "/link")
    assert isinstance(result.exception, SystemExit), repr(result.exception)


def test_a_challenge_that_is_not_an_object_is_an_error_line(serve: Callable[..., str]) -> None:
    base = serve(Hostile({"/link": html(page()), "/challenge": as_json(["not", "an", "object"])}))
    result = report(base + "/link")
    assert isinstance(result.exception, SystemExit), repr(result.exception)


def test_the_comment_goes_only_to_the_links_service(serve: Callable[..., str]) -> None:
    other = Hostile({"/collect": lambda _r: Response(status=303, headers={"Location": "/x"})})
    other_url = serve(other)
    base = serve(Hostile({"/link": html(page(action=other_url + "/collect")), "/challenge": as_json(GOOD_CHALLENGE)}))
    report(base + "/link")
    assert not any(COMMENT in form.values() for form in other.forms), "the comment was posted to another host"


def test_a_huge_page_is_not_read_whole(serve: Callable[..., str]) -> None:
    sent = [0]

    def endless(_r: Request) -> Response:
        def chunks() -> Iterator[bytes]:
            for _ in range(256):  # 256 MiB of page
                sent[0] += 1 << 20
                yield b"<p>" + b"x" * ((1 << 20) - 3)

        return Response(chunks(), mimetype="text/html")

    base = serve(Hostile({"/link": endless}))
    result = report(base + "/link")
    assert result.exit_code != 0
    assert sent[0] <= 16 << 20, f"read {sent[0] >> 20} MiB of a report page"


def test_a_redirect_loop_is_one_error_line(serve: Callable[..., str]) -> None:
    base = serve(Hostile({"/link": lambda _r: Response(status=302, headers={"Location": "/link"})}))
    result = report(base + "/link")
    assert result.exit_code == 1 and "TooManyRedirects" in result.output and "Traceback" not in result.output


@needs_openssl
def test_a_certificate_problem_never_shows_the_comment(tmp_path: Path, serve: Callable[..., str]) -> None:
    _cert, context = self_signed(tmp_path)
    tls = Hostile({
        "/link": html(page(action="/post")),
        "/challenge": as_json(GOOD_CHALLENGE),
        "/post": lambda _r: Response(status=303, headers={"Location": "/s"}),
    })  # fmt: skip
    tls_url = serve(tls, context)  # a certificate no CA bundle trusts
    result = report(tls_url + "/link")
    assert result.exit_code == 1 and "SSLError" in result.output
    assert COMMENT not in result.output and tls.forms == []


def test_an_unsolvable_challenge_is_an_error_line(serve: Callable[..., str]) -> None:
    challenge = {**GOOD_CHALLENGE, "challenge": "f" * 64}  # no number up to maxNumber solves it
    base = serve(Hostile({"/link": html(page()), "/challenge": as_json(challenge)}))
    result = report(base + "/link")
    assert isinstance(result.exception, SystemExit), repr(result.exception)
