"""Secrets never appear in logs: a full flow through a real HTTP server (werkzeug's, which
logs every request line), with gateway failures and an SMTP server that refuses the login
at first, with every logger at DEBUG. Searched for: link keys, the app secret key, the node
password (and its Basic-auth encoding), the SMTP password (and its AUTH encodings), and
every release token."""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import default
from typing import Any

import pytest
import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from werkzeug.serving import make_server

from release.devtools.mailcapture import free_port
from release.ops.logs import JsonFormatter
from tests.support.altcha import solve_altcha
from tests.support.stack import StackFactory, drain_due
from tests.support.visitor import CSRF_RE, release_token_from, report_path

pytestmark = [
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning"),
    pytest.mark.filterwarnings("ignore:Session.login_data is deprecated"),
]
SMTP_USER = "release-mailer"
SMTP_PASSWORD = "smtp-Pa55word-that-must-stay-secret"
LOGGERS = ("", "werkzeug", "release", "urllib3", "aiosmtplib", "flask-limiter", "sqlalchemy", "gunicorn")
TEST_SERVER_LOGGERS = ("mail.log",)  # the test's own SMTP server, not part of the service


class AuthSmtp:
    """An SMTP server that offers AUTH without TLS (test only), refuses the first logins
    and keeps the mail it accepts."""

    def __init__(self, refuse_first: int) -> None:
        self.refuse_left = refuse_first
        self.logins: list[tuple[str, bool]] = []
        self.messages: list[bytes] = []
        self.port = free_port()
        self.controller = Controller(
            self,
            hostname="127.0.0.1",
            port=self.port,
            server_hostname="auth.localhost",
            authenticator=self.authenticate,
            auth_require_tls=False,
            auth_required=True,
            auth_exclude_mechanism=["LOGIN"],
        )

    def authenticate(self, _server: Any, _session: Any, _envelope: Any, _mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.password.decode() == SMTP_PASSWORD and self.refuse_left <= 0
        self.refuse_left -= 1
        self.logins.append((data.login.decode() if isinstance(data, LoginPassword) else "?", ok))
        return AuthResult(success=ok, handled=False)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        self.messages.append(envelope.original_content or envelope.content)
        return "250 OK"


@pytest.fixture
def auth_smtp() -> Iterator[AuthSmtp]:
    server = AuthSmtp(refuse_first=2)
    server.controller.start()
    yield server
    server.controller.stop()


def secret_forms(secret: str, user: str = "") -> set[str]:
    forms = {secret, base64.b64encode(secret.encode()).decode()}
    if user:
        forms.add(base64.b64encode(f"{user}:{secret}".encode()).decode())  # HTTP Basic
        forms.add(base64.b64encode(f"\0{user}\0{secret}".encode()).decode())  # AUTH PLAIN
    return forms


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_secret_in_any_log_record(
    make_stack: StackFactory, auth_smtp: AuthSmtp, caplog: pytest.LogCaptureFixture, log_format: str
) -> None:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    stack = make_stack(
        logging={"format": log_format},
        app={"public_url": "http://release.example.test"},  # plain HTTP to the local test server
        links={"keys": ["current-link-key-0123456789abcdef", "previous-link-key-0123456789abcdef"]},
        smtp={"port": auth_smtp.port, "username": SMTP_USER, "password": SMTP_PASSWORD, "security": "none"},
    )
    settings = stack.services.settings
    server = make_server("127.0.0.1", 0, stack.app, threaded=True)  # logs through "werkzeug"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    tokens: list[str] = []
    try:
        tx = stack.sim.add_message("anna@partner.example", ["alice@example.com", "bob@example.com"], "Notes")
        http = requests.Session()
        path = report_path(stack, tx)
        form = http.get(base + path, timeout=10)
        match = CSRF_RE.search(form.text)
        assert form.status_code == 200 and match
        challenge = http.get(base + "/captcha/altcha-challenge", timeout=10).json()
        data = {"csrf_token": match.group(1), "comment": "hello", "altcha": solve_altcha(challenge)}
        assert http.post(base + path, data=data, timeout=10, allow_redirects=False).status_code == 303

        stack.sim.fail_next(2, status=503)  # the gateway fails twice, then answers
        drain_due(stack.worker)
        assert len(auth_smtp.messages) == 2, auth_smtp.logins  # mailed after two refused logins
        assert [ok for _, ok in auth_smtp.logins].count(False) == 2
        tokens = [release_token_from(BytesParser(policy=default).parsebytes(raw)) for raw in auth_smtp.messages]
        assert len(tokens) == 2

        for token in tokens:  # a mail scanner and the recipient open the link
            page = http.get(f"{base}/release/{token}", timeout=10)
            assert page.status_code == 200
            http.get(f"{base}/release/{token}/status", timeout=10)
        match = CSRF_RE.search(page.text)
        assert match
        stack.sim.fail_next(1, status=503)
        released = http.post(
            f"{base}/release/{tokens[-1]}",
            data={"csrf_token": match.group(1)},
            headers={"Referer": f"{base}/release/{tokens[-1]}"},
            timeout=10,
            allow_redirects=False,
        )
        assert released.status_code == 303
        drain_due(stack.worker)
        http.get(f"{base}/release/{tokens[0]}x", timeout=10)  # 404
        http.get(f"{base}/report?n=mx1&m=x&t=1&s=00", timeout=10)  # 400
    finally:
        server.shutdown()
        thread.join(timeout=5)

    ours = f"127.0.0.1:{server.server_port}"  # the test's HTTP client (urllib3) logs its own URLs
    records = [
        r
        for r in caplog.records
        if not r.name.startswith(TEST_SERVER_LOGGERS) and not (r.name.startswith("urllib3") and ours in r.getMessage())
    ]
    text = "\n".join(logging.Formatter("%(name)s %(levelname)s %(message)s").format(r) for r in records)
    # What the configured handler writes (JSON escapes differ): searched for secrets as well.
    emitted = "\n".join(JsonFormatter().format(r) for r in records) if log_format == "json" else text
    # One line per request with the path redacted and no query string, and one per job run.
    assert "GET /release/[token] 200" in text and "GET /report 200" in text
    assert not [r for r in records if r.name == "release.request" and "?" in r.getMessage()]
    assert "job locate" in text and " done in " in text and " retry in " in text
    if log_format == "json":
        lines = [json.loads(line) for line in emitted.splitlines()]
        requests_logged = [e for e in lines if e["logger"] == "release.request"]
        assert {"method", "path", "status", "duration_ms", "request_id"} <= set(requests_logged[0])
        assert {"/release/[token]", "/report", "/release/[token]/status"} <= {e["path"] for e in requests_logged}
        assert {e["outcome"] for e in lines if "job_kind" in e} >= {"done", "retry"}
    # The test saw what it looks through: request lines, worker retries, SMTP refusals.
    assert '"GET /release/[token] HTTP/1.1" 200' in text, "request lines of release pages were not logged"
    assert "POST /release/[token]" in text and "Referer" not in text
    assert "503" in text and "attempt 1 failed" in text
    assert "535" in text or "uthentication" in text, "the refused SMTP login was not logged"
    node = settings.nodes[0]
    secrets_to_find = {
        "app.secret_key": secret_forms(settings.app.secret_key),
        "node password": secret_forms(node.password, node.username),
        "smtp password": secret_forms(SMTP_PASSWORD, SMTP_USER),
        **{f"links.keys[{i}]": secret_forms(key) for i, key in enumerate(settings.links.keys)},
        **{f"release token {i}": {token} for i, token in enumerate(tokens)},
    }
    leaks = {name: form for name, forms in secrets_to_find.items() for form in forms if form in text + emitted}
    print(f"searched {len(records)} log records ({len(text)} characters) for "
          f"{sum(len(f) for f in secrets_to_find.values())} secret forms: {len(leaks)} found")  # fmt: skip
    assert not leaks, leaks


def test_gunicorn_access_log_lines_are_redacted(make_stack: StackFactory, caplog: pytest.LogCaptureFixture) -> None:
    """`python app.py` runs gunicorn with accesslog on: its request line and Referer hold the
    token (gunicorn logs ``access_log_format % atoms`` through the "gunicorn.access" logger)."""
    from gunicorn.config import Config

    make_stack()  # create_app installs the filter
    token = "Tq2" + "x" * 40
    atoms = {"h": "192.0.2.1", "l": "-", "u": "-", "t": "[now]", "r": f"POST /release/{token} HTTP/1.1",
             "s": "303", "b": "0", "f": f"https://release.example.test/release/{token}", "a": "Mozilla"}  # fmt: skip
    caplog.set_level(logging.INFO, logger="gunicorn.access")
    logging.getLogger("gunicorn.access").info(Config().access_log_format, atoms)
    (record,) = [r for r in caplog.records if r.name == "gunicorn.access"]
    assert token not in record.getMessage() and token[:20] not in caplog.text
    assert record.getMessage().count("/release/[token]") == 2
