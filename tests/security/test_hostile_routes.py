"""The guard: every rule of the app's URL map, with every method it accepts, as every role
(anonymous, sender, recipient, viewer, admin, API key, rspamd node), fed the hostile corpus in
every path value, query parameter, form field, JSON field, documented header and raw body,
plus structural abuse and random examples (tests/support/guard.py). No answer may be a 5xx
and no traceback may reach the logs, on SQLite and on PostgreSQL. On SQLite the app runs in
demo mode (demo mode is SQLite only; it adds the /demo pages and nothing else), so every rule
of both configurations is walked.

Nothing here lists routes or fields: they come from the URL map, a crawl of the pages as each
role (links, forms, widgets), the OpenAPI documents and the names the views read. A new route
is walked as soon as it exists; one the guard cannot get past its refusals fails the test.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from flask import Flask, request
from sqlalchemy import select

from release.db.models import AdminUser, Job
from release.db.states import JobState
from release.devtools.demo import DemoRuntime
from release.devtools.mailcapture import CaptureServer
from release.devtools.simulator import HalonSimulator, SimulatorServer
from release.web.admin import auth
from release.web.jsonbody import JsonProvider
from tests.support.altcha import solve_altcha
from tests.support.guard import Guard
from tests.support.hostile import MAX_BODY
from tests.support.previews import held_with_link, invoice
from tests.support.rspamd import NODE, PUSH_PASSWORD, rspamd_node
from tests.support.stack import Stack, StackFactory, drain_due
from tests.support.surface import Role, Surface
from tests.support.visitor import csrf_token, release_token_from, report_path, submit_report

KEY = "guard-bearer-key-0123456789abcdef"  # the API key, the allow-list key and the metrics token
ADMIN = ("guard-admin", "guard admin password 0123")
VIEWER = ("guard-viewer", "guard viewer password 0123")
PUBLIC_HOST = "release.example.test"
QUIET = ("release",)  # the app's logs (a line per request): made and formatted, kept by the guard, not printed


@dataclass
class World:
    """The stack with data in every state the pages show, and the roles."""

    stack: Stack
    roles: list[Role]
    tokens: list[str]


def _link_query(stack: Stack, tx: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(report_path(stack, tx)).query))


def _sign_in(stack: Stack, who: tuple[str, str]) -> Role:
    role = Role(who[0].removeprefix("guard-"), stack.new_client(), ["/admin/"])

    def ensure(role: Role) -> None:
        """Sign in again when the walk signed this account out (POST /admin/logout)."""
        with stack.services.db.session() as session:
            nonce = session.scalar(select(AdminUser.session_nonce).where(AdminUser.username == who[0]))
        if nonce and role.client.get_cookie("__Host-session") is not None:
            return
        page = role.client.get("/admin/login")
        login = {"csrf_token": csrf_token(page.text), "username": who[0], "password": who[1]}
        assert role.client.post("/admin/login", data=login).status_code == 303
        role.csrf = csrf_token(role.client.get("/admin/settings").text)

    role.ensure = ensure
    ensure(role)
    return role


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    """A 6.x node: its ndr mode opens the gateway's push endpoint to the walk."""
    with SimulatorServer(HalonSimulator({"release": "sim-password-0123"}, generation=6)) as server:
        yield server


def build_world(make_stack: StackFactory, relay: CaptureServer, *, demo: bool) -> World:
    """Reports in several states (notified, released, waiting for approval, a dead job), an
    admin and a viewer signed in, and one client per role; beside the halon6 node, an rspamd
    node (its pushes capped at the app's body limit; ``relay`` is only its configured relay:
    a push never sends mail)."""
    stack = make_stack(
        app={"demo": demo},
        api={"keys": [KEY]},
        policy={"allowlist_keys": [KEY], "max_spam_score": 5.0},
        metrics={"token": KEY},
        worker={"max_attempts": 1},  # a job that fails once is dead: the console offers its retry
        node={"sender_notice": "ndr"},  # POST /gateway/v1/held answers (the simulator is a 6.x node)
        more_nodes=[rspamd_node(relay.port, max_message_bytes=MAX_BODY)],  # POST /gateway/v1/rspamd/<node>
        preview={"allow_downloads": True},  # the release page links its attachments
    )
    stack.app.config["TESTING"] = False  # answer as in production: a 500 page, never a raised error
    with stack.services.db.session() as session:
        auth.create_admin(session, *ADMIN, "admin", actor="test")
        auth.create_admin(session, *VIEWER, "viewer", actor="test")
        session.commit()
    sim = stack.sim
    reported = sim.add_message("anna@partner.example", ["alice@example.com", "bob@example.com"], "Quarterly figures")
    risky = sim.add_message("risk@partner.example", ["dave@example.com"], "Invoice", score=9.0)
    # Copies enough for every role's actions: each release or deletion uses one up.
    many = sim.add_message("list@partner.example", [f"member{i}@example.com" for i in range(12)], "Newsletter")
    for tx in (reported, risky, many):
        assert submit_report(stack.new_client(), stack, report_path(stack, tx)).status_code == 303
    drain_due(stack.worker)
    sim.fail_next(1, status=503)
    assert submit_report(stack.new_client(), stack, report_path(stack, sim.add_message(
        "gone@partner.example", ["erin@example.com"], "Dead job"))).status_code == 303  # fmt: skip
    drain_due(stack.worker)
    with stack.services.db.session() as session:
        assert session.scalar(select(Job.id).where(Job.state == JobState.DEAD)) is not None
    # A message the rspamd node holds: its release page embeds the preview frame.
    previewed = held_with_link(stack, invoice(to=["henry@example.com"]), recipients=["henry@example.com"])
    mails = {m.rcpt_tos[0]: release_token_from(m.message) for m in stack.smtp.messages()}
    tokens = [mails["alice@example.com"], mails["bob@example.com"], mails["dave@example.com"], previewed]
    for token in (tokens[0], tokens[2]):  # one released, one held for an admin's approval
        client = stack.new_client()
        page = client.get(f"/release/{token}")
        assert client.post(f"/release/{token}", data={"csrf_token": csrf_token(page.text)}).status_code == 303
    drain_due(stack.worker)
    if demo:  # what start_demo() attaches: the pages under /demo show its messages and mailbox
        runtime = DemoRuntime(stack.app, None, stack.simulator, stack.smtp, stack.worker, [reported, risky, many])  # type: ignore[arg-type]
        stack.app.extensions["release_demo"] = runtime

    reported_link, unreported_link = report_path(stack, reported), report_path(stack, sim.add_message(
        "new@partner.example", ["frank@example.com"], "Not reported yet"))  # fmt: skip
    push_auth = "Basic " + base64.b64encode(f"{NODE}:{PUSH_PASSWORD}".encode()).decode()
    link_values = {v for link in (reported_link, unreported_link) for k, v in parse_qsl(urlsplit(link).query)
                   if k in ("m", "s")}  # fmt: skip
    roles = [
        Role("anonymous", stack.new_client(), ["/", "/admin/", "/api/v1/openapi.json"]),
        Role(
            "sender",
            stack.new_client(),
            [reported_link, unreported_link],
            private=link_values,
            fresh_query=lambda: _link_query(stack, sim.add_message("s@partner.example", ["g@example.com"], "S")),
        ),
        Role("recipient", stack.new_client(), [f"/release/{t}" for t in tokens], private=set(tokens)),
        _sign_in(stack, VIEWER),
        _sign_in(stack, ADMIN),
        Role("api-key", stack.new_client(), ["/", "/admin/login"], headers={"Authorization": f"Bearer {KEY}"}),
        # The node knows the URL it pushes to (its name is no secret) and holds its password.
        Role(
            "rspamd-node",
            stack.new_client(),
            [f"/gateway/v1/rspamd/{NODE}"],
            headers={"Authorization": push_auth},
            private={PUSH_PASSWORD, push_auth},
        ),
    ]
    return World(stack, roles, tokens)


def solve_widget(role: Role, attrs: dict[str, str]) -> str:
    """What the ALTCHA widget posts: a challenge fetched from its URL, solved."""
    response = role.client.get(attrs["challengeurl"], headers=role.headers,
                               environ_base={"REMOTE_ADDR": f"192.0.2.{time.monotonic_ns() % 250 + 1}"})  # fmt: skip
    return solve_altcha(response.get_json()) if response.status_code == 200 else ""


def test_no_route_answers_5xx_or_logs_a_traceback(
    make_stack: StackFactory, smtp_server: CaptureServer, database_url: str
) -> None:
    demo = database_url.startswith("sqlite")
    world = build_world(make_stack, smtp_server, demo=demo)
    app = world.stack.app
    surface = Surface(app, ("localhost", PUBLIC_HOST))
    for role in world.roles:
        surface.crawl(role)
    surface.read_openapi(world.roles[0].client, "/api/v1/openapi.json")
    surface.read_openapi(world.roles[0].client, "/gateway/v1/openapi.json")
    guard = Guard(surface, world.roles, {"altcha-widget": solve_widget})
    guard.run(guard.send_baseline, quiet=QUIET)  # learn the names the views read
    learned, sent_learning = surface.learn(), guard.sent
    seconds = guard.run(quiet=QUIET)

    mode = "demo mode" if demo else "production mode"
    print(f"guard ({mode}): {len(list(app.url_map.iter_rules()))} rules, {len(surface.endpoints)} (rule, method) "
          f"pairs x {len(world.roles)} roles; {surface.pages_crawled} pages crawled, {learned} field names learned "
          f"from the views; {guard.sent} requests ({guard.sent - sent_learning} in the walk, {seconds:.1f}s, "
          f"{guard.cpu_seconds:.1f}s CPU); statuses {dict(sorted(guard.statuses.items()))}")  # fmt: skip
    unreached = sorted(
        e.key for e in surface.endpoints.values() if e.method not in ("HEAD", "OPTIONS") and e.key not in guard.passed
    )
    by_kind = Counter((f.endpoint, f.note.split(" [")[0].split(":")[0]) for f in guard.findings)
    summary = "\n".join(f"  {n:4d} x {endpoint}: {kind}" for (endpoint, kind), n in sorted(by_kind.items()))
    examples = "\n".join(f"  {f}" for f in _one_per_kind(guard.findings))
    assert not guard.findings and not unreached, (
        f"no role got past the refusals of: {[(key, dict(guard.by_endpoint[key])) for key in unreached]} "
        "(give the guard the data or credentials they need)\n"
        f"{len(guard.findings)} findings:\n{summary}\nfirst of each:\n{examples}"
    )


def _one_per_kind(findings: list[object]) -> list[object]:
    seen: set[tuple[str, str, str]] = set()
    first = []
    for f in findings:
        key = (f.endpoint, f.role, f.note.split(" [")[0])  # type: ignore[attr-defined]
        if key not in seen:
            seen.add(key)
            first.append(f)
    return first[:200]


def planted_app(*, broken: bool) -> Flask:
    """A small app with one fault of each kind the guard must find, or (``broken`` False) the
    same app with them fixed: a guard that finds nothing here is not looking."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.json = JsonProvider(app)  # as the service's (deep JSON is a 400, not a RecursionError)

    def fault(condition: bool) -> None:
        if broken and condition:
            raise ValueError("planted fault")

    @app.get("/")
    def index() -> str:
        return '<a href="/items/1">item</a> <a href="/search?q=x">search</a> <a href="/form">form</a>'

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> str:
        fault(item_id >= 2**63)  # an id the database cannot hold
        return str(item_id)

    @app.get("/search")
    def search() -> str:
        fault("\0" in request.args.get("q", ""))  # NUL into a query
        fault("\u202e" in request.args.get("hidden", ""))  # a name no page shows
        return "results"

    @app.route("/form", methods=["GET", "POST"])
    def form() -> str:
        if request.method == "POST":
            fault("\r" in request.form.get("name", ""))  # CR/LF into a header
            return "thanks"
        return '<form method="post"><input name="name" value=""><button name="go" value="1">Go</button></form>'

    @app.put("/api/thing")
    def thing() -> str:
        body = request.get_json(silent=True) or {}
        fault(isinstance(body, dict) and isinstance(body.get("size"), float))  # a float where an int goes
        return "ok"

    @app.get("/openapi.json")
    def openapi() -> dict[str, Any]:
        return PLANTED_OPENAPI

    @app.post("/push/<name>")
    def push(name: str) -> tuple[str, int, dict[str, str]]:
        """A machine client's push (documented only): HTTP Basic, headers and a raw body."""
        if name != "node":
            return "no such node", 404, {}
        if request.authorization is None or request.authorization.password != "node password":
            return "who?", 401, {"WWW-Authenticate": 'Basic realm="push"'}
        tag = request.headers.get("X-Tag")
        fault(tag is None)  # a required header missing
        fault("\0" in (tag or ""))  # NUL in a header
        try:
            json.loads(request.headers.get("X-List") or "[]")
        except (ValueError, RecursionError) as exc:
            fault(isinstance(exc, RecursionError))  # JSON in a header, nested past the parser's recursion
        fault(b"\0" in request.get_data().split(b"\n", 1)[0])  # NUL in the message's first header
        return "kept", 200, {}

    return app


PLANTED_OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "planted", "version": "1"},
    "servers": [{"url": "https://localhost/"}],
    "paths": {"/push/{name}": {"post": {
        "parameters": [
            {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
            {"name": "X-Tag", "in": "header", "required": True, "schema": {"type": "string"}, "example": "tag"},
            {"name": "X-List", "in": "header", "content": {"application/json": {"schema": {  # no example: made
                "type": "array", "items": {"type": "string"}, "minItems": 1}}}},
        ],
        "requestBody": {"content": {"message/rfc822": {"example": "Subject: hi\r\n\r\nbody\r\n"}}},
        "responses": {"200": {"description": "kept"}},
    }}},
}  # fmt: skip


@pytest.mark.parametrize("broken", [True, False], ids=["broken", "fixed"])
def test_the_guard_finds_planted_faults(broken: bool) -> None:
    app = planted_app(broken=broken)
    surface = Surface(app, ("localhost",))
    basic = "Basic " + base64.b64encode(b"node:node password").decode()
    node = Role("node", app.test_client(), ["/push/node"], headers={"Authorization": basic}, private={basic})
    roles = [Role("anonymous", app.test_client(), ["/"]), node]
    for role in roles:
        surface.crawl(role)
    surface.endpoints[("/api/thing", "PUT")].json = {"type": "object", "properties": {"size": {"type": "integer"}}}
    surface.read_openapi(roles[0].client, "/openapi.json")
    guard = Guard(surface, roles, {})
    guard.run(guard.send_baseline)
    assert surface.learn() >= 1  # "hidden" was read by the view
    guard.run()
    found = {(f.endpoint, f.note.split(":")[0].split(" [")[0]) for f in guard.findings}
    if not broken:
        assert not guard.findings, guard.findings[:5]
        assert {"GET /items/<int:item_id>", "POST /form", "PUT /api/thing", "POST /push/<name>"} <= set(guard.passed)
        assert guard.passed["POST /push/<name>"] == {"node"}
        return
    assert {
        ("GET /items/<int:item_id>", "path 'item_id'"),
        ("GET /search", "query 'q'"),
        ("GET /search", "query 'hidden'"),
        ("POST /form", "form 'name'"),
        ("PUT /api/thing", "json 'size'"),
        ("POST /push/<name>", "header 'X-Tag' missing"),
        ("POST /push/<name>", "header 'X-Tag'"),
        ("POST /push/<name>", "header 'X-List'"),
        ("POST /push/<name>", "body first line"),
    } <= found, found
