"""Secrets never appear in logs, in both ways the service writes them: a full flow through
werkzeug's HTTP server (which logs every request line), with gateway failures and an SMTP
server that refuses the login at first, every logger at DEBUG; and `python app.py` with a
config (gunicorn, its access log on, the worker in a thread), read from its output. Searched
for: link keys, the app secret key, the node password (and its Basic-auth encoding), the SMTP
password (and its AUTH encodings), every release token, and the report links' query strings
(their signatures). A database error's traceback names the statement, never its values (the
sender's comment and IP, the sign-in user name)."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import Engine, create_engine
from werkzeug.serving import make_server

from release.core import links
from release.devtools.mailcapture import CaptureServer, free_port
from release.devtools.simulator import SimulatorServer
from release.ops.logs import JsonFormatter
from release.web.admin import auth
from tests.support.altcha import solve_altcha
from tests.support.config import make_config, write_config
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
ROOT = Path(__file__).resolve().parents[2]
# Values that reach the database only as bound parameters of a statement that fails.
SECRET_COMMENT = "comment-only-the-database-may-see-4711"
SENDER_IP = "198.51.100.47"
ADMIN_NAME = "signin-name-only-the-database-may-see"
ADMIN_PASSWORD = "a password long enough 0123"


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


def query_forms(path_and_query: str) -> set[str]:
    """What would give a report link away: its query string and its signature."""
    query = path_and_query.partition("?")[2]
    signature = dict(p.split("=", 1) for p in query.split("&"))["s"]
    return {query, signature, f"s={signature}"}


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
        http.get(f"{base}/report/status?{path.partition('?')[2]}", timeout=10)
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
    assert '"GET /report HTTP/1.1" 200' in text and '"GET /report/status HTTP/1.1" 200' in text
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
        "report link": query_forms(path),
    }
    leaks = {name: form for name, forms in secrets_to_find.items() for form in forms if form in text + emitted}
    print(f"searched {len(records)} log records ({len(text)} characters) for "
          f"{sum(len(f) for f in secrets_to_find.values())} secret forms: {len(leaks)} found")  # fmt: skip
    assert not leaks, leaks


def test_gunicorn_access_log_lines_are_redacted(make_stack: StackFactory, caplog: pytest.LogCaptureFixture) -> None:
    """`python app.py` runs gunicorn with accesslog on: its request line and Referer hold the
    token and the report link's query (gunicorn logs ``access_log_format % atoms`` through the
    "gunicorn.access" logger)."""
    from gunicorn.config import Config

    make_stack()  # create_app installs the filter
    token = "Tq2" + "x" * 40
    query = "n=mx1&m=tx-1&t=1700000000&s=" + "ab" * 32
    atoms = {"h": "192.0.2.1", "l": "-", "u": "-", "t": "[now]", "r": f"POST /release/{token}?{query} HTTP/1.1",
             "s": "303", "b": "0", "f": f"https://release.example.test/report?{query}", "a": "Mozilla"}  # fmt: skip
    caplog.set_level(logging.INFO, logger="gunicorn.access")
    logging.getLogger("gunicorn.access").info(Config().access_log_format, atoms)
    (record,) = [r for r in caplog.records if r.name == "gunicorn.access"]
    assert token not in record.getMessage() and token[:20] not in caplog.text
    assert "ab" * 32 not in caplog.text and "?" not in record.getMessage()
    assert '"POST /release/[token] HTTP/1.1" 303 0 "https://release.example.test/report" ' in record.getMessage()


def refuse_inserts(engine: Engine, *tables: str) -> None:
    """Make every INSERT into ``tables`` fail inside the database (a trigger): a real database
    error, raised while the statement's parameters are bound."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            for table in tables:
                conn.exec_driver_sql(f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} "
                                     "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")  # fmt: skip
            return
        conn.exec_driver_sql("CREATE OR REPLACE FUNCTION refuse_insert() RETURNS trigger LANGUAGE plpgsql "
                             "AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$")  # fmt: skip
        for table in tables:
            conn.exec_driver_sql(f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} "
                                 "FOR EACH ROW EXECUTE FUNCTION refuse_insert()")  # fmt: skip


def test_database_error_logs_the_statement_not_its_values(
    make_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A report and a sign-in whose INSERT the database refuses: 500 pages, and tracebacks that
    name the SQL but not the comment, the sender's IP or the user name bound to it."""
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    # SQLAlchemy's echo level (statements, their parameters hidden); its DEBUG adds result rows.
    caplog.set_level(logging.INFO, logger="sqlalchemy")
    stack = make_stack(app={"public_url": "http://release.example.test", "trusted_proxies": 1})
    with stack.services.db.session() as session:
        auth.create_admin(session, ADMIN_NAME, ADMIN_PASSWORD, "admin", actor="test")
        session.commit()
    refuse_inserts(stack.services.db.engine, "reports", "audit_log")
    server = make_server("127.0.0.1", 0, stack.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        http = requests.Session()
        http.headers["X-Forwarded-For"] = SENDER_IP  # one trusted proxy: this is the client's address
        path = report_path(stack, stack.sim.add_message("anna@partner.example", ["bob@example.com"], "Notes"))
        match = CSRF_RE.search(http.get(base + path, timeout=10).text)
        assert match
        challenge = http.get(base + "/captcha/altcha-challenge", timeout=10).json()
        data = {"csrf_token": match.group(1), "comment": SECRET_COMMENT, "altcha": solve_altcha(challenge)}
        assert http.post(base + path, data=data, timeout=10, allow_redirects=False).status_code == 500
        match = CSRF_RE.search(http.get(base + "/admin/login", timeout=10).text)
        assert match
        login = {"csrf_token": match.group(1), "username": ADMIN_NAME, "password": ADMIN_PASSWORD}
        assert http.post(base + "/admin/login", data=login, timeout=10, allow_redirects=False).status_code == 500
    finally:
        server.shutdown()
        thread.join(timeout=5)

    records = [r for r in caplog.records if r.name.startswith(("release", "werkzeug", "sqlalchemy", "flask"))]
    text = "\n".join(logging.Formatter("%(name)s %(levelname)s %(message)s").format(r) for r in records)
    emitted = "\n".join(JsonFormatter().format(r) for r in records)
    # The test saw what it looks through: both tracebacks, with their statements.
    assert len([r for r in records if r.exc_info]) == 2, text
    assert "INSERT INTO reports" in text and "INSERT INTO audit_log" in text
    assert text.count("[SQL parameters hidden due to hide_parameters=True]") >= 2
    for value in (SECRET_COMMENT, ADMIN_NAME, ADMIN_PASSWORD):
        assert value not in text and value not in emitted, value
    # The client's address is in werkzeug's request lines, as in every access log; nowhere else.
    assert not [r for r in records if SENDER_IP in JsonFormatter().format(r) and r.name != "werkzeug"]


@pytest.fixture
def single_process(
    database_url: str, simulator: SimulatorServer, smtp_server: CaptureServer, tmp_path: Path
) -> Iterator[tuple[str, dict[str, str], Path]]:
    """`python app.py` with a config: gunicorn (access log on), the worker in a thread."""
    port = free_port()
    settings = make_config(database_url, simulator, smtp_server.port, app={"public_url": f"http://127.0.0.1:{port}"})
    config = write_config(tmp_path / "config.toml", settings)
    values = {"public_url": settings["app"]["public_url"], "secret_key": settings["app"]["secret_key"],
              "link_key": settings["links"]["keys"][0], "database_url": database_url}  # fmt: skip
    env = {**os.environ, "RELEASE_CONFIG": str(config), "RELEASE_BIND": f"127.0.0.1:{port}", "PYTHONPATH": str(ROOT)}
    output = tmp_path / "server.log"
    with output.open("w") as log:
        server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if requests.get(f"{values['public_url']}/healthz", timeout=1).ok:
                        break
                except requests.RequestException:
                    pass
                assert server.poll() is None and time.monotonic() < deadline, output.read_text()
                time.sleep(0.1)
            yield values["public_url"], values, output
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()


def test_single_process_server_logs_no_secrets(
    single_process: tuple[str, dict[str, str], Path], simulator: SimulatorServer, smtp_server: CaptureServer
) -> None:
    """The whole flow through `python app.py`, a Referer on every step as a browser sends it,
    then a report the database refuses; its output is what an operator's journal keeps."""
    base, values, output = single_process
    http = requests.Session()

    def report_link(tx: str) -> str:
        return links.build_report_url(base, values["link_key"], "mx1", tx, int(time.time()))

    link = report_link(simulator.sim.add_message("anna@partner.example", ["alice@example.com", "bob@example.com"], "N"))
    match = CSRF_RE.search(http.get(link, timeout=10).text)
    assert match
    http.headers["Referer"] = link  # same-origin: the browser sends the whole report link
    http.get(link.replace("/report?", "/report/status?"), timeout=10)
    challenge = http.get(f"{base}/captcha/altcha-challenge", timeout=10).json()
    form = {"csrf_token": match.group(1), "comment": "We met at the fair.", "altcha": solve_altcha(challenge)}
    assert http.post(link, data=form, timeout=10).status_code == 200  # 303 to the status page
    deadline = time.monotonic() + 20
    while len(smtp_server.messages()) < 2:
        assert time.monotonic() < deadline, output.read_text()
        time.sleep(0.05)
    tokens = [release_token_from(m.message) for m in smtp_server.messages()]
    page = http.get(f"{base}/release/{tokens[0]}", timeout=10)
    match = CSRF_RE.search(page.text)
    assert match
    http.headers["Referer"] = f"{base}/release/{tokens[0]}"
    assert http.post(f"{base}/release/{tokens[0]}", data={"csrf_token": match.group(1)}, timeout=10).ok
    http.get(f"{base}/api/v1/releases/{tokens[1]}", timeout=10)
    http.get(f"{base}/release/{tokens[1]}x", timeout=10)  # 404

    engine = create_engine(values["database_url"])
    refuse_inserts(engine, "reports")
    engine.dispose()
    refused = report_link(simulator.sim.add_message("carl@partner.example", ["dave@example.com"], "Refused"))
    match = CSRF_RE.search(http.get(refused, timeout=10).text)
    assert match
    challenge = http.get(f"{base}/captcha/altcha-challenge", timeout=10).json()
    form = {"csrf_token": match.group(1), "comment": SECRET_COMMENT, "altcha": solve_altcha(challenge)}
    assert http.post(refused, data=form, timeout=10, headers={"Referer": refused}).status_code == 500
    time.sleep(0.3)  # the access log line is written after the response

    text = output.read_text()
    # The test saw what it looks through: gunicorn's access log with Referers, the traceback.
    assert re.search(r'"GET /report HTTP/1.1" 200 \d+ "http://127.0.0.1:\d+/report" ', text), text
    assert '"POST /release/[token] HTTP/1.1" 303' in text and '"http://127.0.0.1' in text
    assert '"GET /api/v1/releases/[token] HTTP/1.1" 200' in text
    assert "Traceback" in text and "INSERT INTO reports" in text and "[SQL parameters hidden" in text
    secrets_to_find = {
        "app.secret_key": secret_forms(values["secret_key"]),
        "links.keys[0]": secret_forms(values["link_key"]),
        "node password": secret_forms("sim-password-0123", "release"),
        "report link": query_forms(link) | query_forms(refused),
        "comment": {SECRET_COMMENT},
        **{f"release token {i}": {token} for i, token in enumerate(tokens)},
    }
    leaks = {name: form for name, forms in secrets_to_find.items() for form in forms if form in text}
    assert not leaks, leaks
