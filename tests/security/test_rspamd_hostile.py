"""A hostile review of the rspamd node (push endpoint, stored copies, re-injection,
learn-ham), on SQLite and PostgreSQL: each test was a reproducer that failed before its fix
(its docstring says what went wrong), and is named for the behaviour that holds now."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from release.config import NodeSettings
from release.db.engine import Database
from release.db.models import StoredCopy, StoredMessage, utcnow
from release.devtools.mailcapture import CaptureServer
from release.devtools.simulator import SimulatorServer
from release.gateway import GatewayError, RspamdGateway
from release.gateway.stored import PushInvalid, parse_push, store, sweep
from tests.support.rspamd import (
    CONTROLLER_PASSWORD,
    NODE,
    PUSH_PASSWORD,
    build_rspamd_stack,
    exporter_headers,
    push,
    raw_message,
)
from tests.support.rspamd import rspamd_node_settings as node_for
from tests.support.stack import Stack, close_stack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def rspamd_stack(
    database_url: str, simulator: SimulatorServer, smtp_server: CaptureServer, relay: CaptureServer
) -> Iterator[Stack]:
    built = build_rspamd_stack(database_url, simulator, smtp_server, relay.port)
    built.app.config["PROPAGATE_EXCEPTIONS"] = False  # what gunicorn answers: a 500, not a traceback here
    yield built
    close_stack(built)


def stored_recipients(db: Database) -> list[str]:
    with db.session() as session:
        return sorted(session.scalars(select(StoredCopy.recipient)))


def message_with_subject(subject: str) -> bytes:
    return (
        b"Received: from mail.partner.example ([198.51.100.7])\r\n\tby mx3.example.com (Postfix) id 4Qx9\r\n"
        b"From: Anna <anna@partner.example>\r\nTo: alice@example.com\r\nSubject: " + subject.encode() + b"\r\n"
        b"Message-ID: <hostile@partner.example>\r\n\r\nHello.\r\n"
    )


# -- the push: what any sender controls (the message) ----------------------------------------------


def test_a_subject_of_many_encoded_words_costs_a_push_little_memory(rspamd_stack: Stack) -> None:
    """Any sender writes the Subject. 10,000 RFC 2047 words (140 kB, far below the 25 MB cap)
    make the push's subject parse (email policy.default) allocate ~700 MB and take seconds:
    it grows quadratically (280 kB: ~2.8 GB, 560 kB: ~7.8 GB and 9 s), so one rejected spam
    message of under 1 MB gets a gunicorn worker killed by the OOM killer (or by its timeout),
    and Rspamd pushes it again on every retry of the sending MTA."""
    content = message_with_subject("=?utf-8?q?a?= " * 10_000)
    assert len(content) < 150_000
    tracemalloc.start()
    try:
        response = push(rspamd_stack.client, content, headers=exporter_headers(recipients=["alice@example.com"]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 200
    assert peak < 64 * 1024 * 1024, f"one 140 kB push allocated {peak // 2**20} MB"


def test_a_subject_of_one_and_a_half_megabytes_is_stored_within_the_rules_timeout(
    rspamd_stack: Stack,
) -> None:
    """The same parse is superlinear in CPU for plain words: 300 kB take ~2 s, 900 kB ~12 s,
    3 MB ~110 s (one gunicorn thread each, then the worker's timeout kills all its threads).
    The rule gives up after 10 s and defers, so such a message is never kept and every retry
    of the sending MTA costs the service the same again."""
    content = message_with_subject("ab " * 500_000)
    started = time.monotonic()
    response = push(rspamd_stack.client, content, headers=exporter_headers(recipients=["alice@example.com"]))
    took = time.monotonic() - started
    assert response.status_code == 200
    assert took < 10, f"a {len(content) // 1000} kB push took {took:.0f} s (the rule's timeout is 10 s)"


def test_a_nul_in_an_encoded_subject_is_stored_without_it(rspamd_stack: Stack) -> None:
    """``=?utf-8?q?...=00...?=`` decodes to a NUL, which the subject cleanup keeps and
    PostgreSQL's text columns refuse: the push is a 500, the rule defers the message, and the
    sender's every retry fails the same way, so the copy is never kept and never releasable."""
    response = push(rspamd_stack.client, message_with_subject("=?utf-8?q?Invoice=00_2026-118?="))
    assert response.status_code == 200, response.text
    with rspamd_stack.services.db.session() as session:
        [subject] = session.scalars(select(StoredMessage.subject)).all()
    assert not re.search(r"[\x00-\x1f\x7f]", subject)


@pytest.mark.parametrize(
    ("name", "value", "status"),
    [
        ("X-Rspamd-rcpt", "[" * 5000, 400),  # deeper than Python's recursion limit
        ("X-Rspamd-symbols", "[" * 5000, 200),  # symbols are informative: ignored when unreadable
        ("X-Rspamd-symbols", json.dumps([{"name": "BIG", "score": 10**400}]), 200),
    ],
    ids=["nested-rcpt", "nested-symbols", "integer-score-beyond-float"],
)
def test_malformed_metadata_json_is_a_400_or_ignored_never_a_500(
    rspamd_stack: Stack, name: str, value: str, status: int
) -> None:
    """json.loads raises RecursionError (not ValueError) on deep nesting, and ``f"{score:.2f}"``
    raises OverflowError on a JSON integer beyond a float: both escape parse_push as a 500."""
    headers = {**exporter_headers(), name: value}
    response = push(rspamd_stack.client, raw_message(), headers=headers)
    assert response.status_code == status, response.status_code


def test_symbols_cut_mid_character_do_not_refuse_the_push(rspamd_stack: Stack) -> None:
    """The rule bounds every header to 2000 bytes with Lua's byte-wise string.sub; a spam
    message easily has 2000 bytes of symbols with options, and options quote the message
    (names, addresses, URLs) in raw UTF-8 (Rspamd 3.4 sends FORGED_SENDER and FROM_NEQ_ENVFROM
    with "j\u00f6rg@b\u00fccher.example" for a UTF-8 From), so the cut can split a UTF-8 character. The symbols are only
    informative (malformed JSON is ignored), yet parse_push refuses the whole push as
    "not UTF-8": 400, and the message is deferred on every retry, never kept."""
    cut = 2000

    def encoded(pad: int) -> bytes:
        symbols = [{"name": f"SYMBOL_{i}", "score": 0.5, "options": ["x" * 20]} for i in range(20)]
        symbols.append({"name": "FROM_NEQ_ENVFROM", "score": 0.1, "options": ["p" * pad + "j\u00f6rg@partner.example"]})
        return json.dumps(symbols, ensure_ascii=False, separators=(",", ":")).encode()

    pad = cut - 1 - encoded(0).index("\u00f6".encode())
    assert pad >= 0
    value = encoded(pad)
    assert value[cut - 1 : cut + 1] == "\u00f6".encode()  # the cut falls inside the character
    headers = {**exporter_headers(), "X-Rspamd-symbols": value[:cut].decode("latin-1")}
    response = push(rspamd_stack.client, raw_message(), headers=headers)
    assert response.status_code == 200, response.text


def test_concurrent_pushes_with_overlapping_recipients_keep_every_copy(db: Database) -> None:
    """Two pushes of one message, {a, b} and {b, c}, at once: both read the known copies, the
    first commits a and b, the second's b collides and store() answers "already stored"
    with 0 copies, so c's copy is silently lost and the exporter, told 200, never pushes
    again. (PostgreSQL; SQLite serialises the two transactions with BEGIN IMMEDIATE.)"""
    content = raw_message()
    seed = parse_push(content, exporter_headers(recipients=["x@example.com"]).get)
    with db.session() as session:
        store(session, NODE, seed, utcnow())
    a_read, b_read, a_committed = threading.Event(), threading.Event(), threading.Event()
    results: dict[str, Any] = {}

    def one(label: str, recipients: list[str], mine: threading.Event, wait_for: threading.Event) -> None:
        pushed = parse_push(content, exporter_headers(recipients=recipients).get)
        with db.session() as session:
            add_all, commit = session.add_all, session.commit

            def add_all_then_signal(rows: Any) -> None:
                add_all(rows)
                mine.set()  # the known copies are read, the new ones decided

            def commit_in_turn() -> None:
                wait_for.wait(timeout=5)  # SQLite: the other one waits for our lock; go on
                try:
                    commit()
                finally:
                    if label == "a":
                        a_committed.set()

            session.add_all = add_all_then_signal  # type: ignore[method-assign]
            session.commit = commit_in_turn  # type: ignore[method-assign]
            try:
                results[label] = store(session, NODE, pushed, utcnow())
            except Exception as exc:  # noqa: BLE001 - reported below
                results[label] = exc
            finally:
                if label == "a":
                    a_committed.set()

    threads = [
        threading.Thread(target=one, args=("a", ["a@example.com", "b@example.com"], a_read, b_read)),
        threading.Thread(target=one, args=("b", ["b@example.com", "c@example.com"], b_read, a_committed)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(isinstance(r, Exception) for r in results.values()), results
    assert stored_recipients(db) == ["a@example.com", "b@example.com", "c@example.com", "x@example.com"], results


def test_a_repeat_push_restarts_the_short_retention_its_new_link_needs(
    db: Database,
) -> None:
    """A push the service stored but the rule gave up on (its 10 s ran out: a slow database, a
    big message) defers the mail; the sending MTA retries for days with the same bytes. A
    retry past the short retention (24 h) and before the next sweep (every 15 min) is
    answered "already stored", so Rspamd rejects with a fresh link, while the copy keeps its
    first push time and the next sweep deletes it: the sender's report finds nothing."""
    pushed = parse_push(raw_message(), exporter_headers(recipients=["alice@example.com"]).get)
    first = utcnow() - timedelta(hours=25)
    with db.session() as session:
        store(session, NODE, pushed, first)
    retry = utcnow()
    with db.session() as session:
        result = store(session, NODE, pushed, retry)  # the exporter is answered 200: a new link
    assert result.repeat
    with db.session() as session:
        sweep(session, timedelta(hours=24), timedelta(days=14), retry + timedelta(minutes=15))
    assert stored_recipients(db) == ["alice@example.com"]


# -- re-injection ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "recipient",
    ["bob@evil.example,alice@example.com", "alice@example.com,bob@evil.example", "bob@evil.example;@example.com"],
)
def test_release_reinjects_to_the_stored_recipient_only(db: Database, relay: CaptureServer, recipient: str) -> None:
    """parse_push accepts any run of non-space characters as an address (commas, semicolons,
    colons, parentheses); aiosmtplib then passes the recipient through email.utils.parseaddr,
    so the RCPT TO the relay gets is a different address from the copy the service shows,
    notifies and audits (with the first: a domain outside the organisation)."""
    try:
        pushed = parse_push(raw_message(), exporter_headers(recipients=[recipient]).get)
    except PushInvalid:
        return  # refused at the push: nothing to re-inject differently
    with db.session() as session:
        m = store(session, NODE, pushed, utcnow()).message_id
    gateway = RspamdGateway(node_for(relay.port), db)
    try:
        [copy] = gateway.find(m)
        assert gateway.release(m, copy.queue) == 1
    finally:
        gateway.close()
    [delivered] = relay.messages()
    assert delivered.rcpt_tos == (copy.recipient,)


def test_the_same_bytes_from_another_envelope_sender_are_released_with_their_own_sender(
    db: Database, relay: CaptureServer
) -> None:
    """``m`` is the digest of the bytes alone, so a second transaction with the same bytes and
    another MAIL FROM (a forwarder's SRS address, a resend by another system) only adds its
    recipients to the first push's message: carol's copy is re-injected with anna's envelope
    sender (bounces, SPF and the sender notice go to the wrong party)."""
    content = raw_message()
    first = parse_push(content, exporter_headers(sender="anna@partner.example", recipients=["alice@example.com"]).get)
    second = parse_push(
        content, exporter_headers(sender="srs0=x@forwarder.example", recipients=["carol@example.com"]).get
    )
    with db.session() as session:
        m = store(session, NODE, first, utcnow()).message_id
    with db.session() as session:
        store(session, NODE, second, utcnow())
    gateway = RspamdGateway(node_for(relay.port), db)
    try:
        carol = next(c for c in gateway.find(m) if c.recipient == "carol@example.com")
        assert gateway.release(m, carol.queue) == 1
    finally:
        gateway.close()
    [delivered] = relay.messages()
    assert delivered.mail_from == "srs0=x@forwarder.example"


def test_two_releases_of_one_copy_at_once_deliver_it_once(db: Database, relay: CaptureServer) -> None:
    """Holds: the claim is a row lock (PostgreSQL) or BEGIN IMMEDIATE (SQLite)."""
    pushed = parse_push(raw_message(), exporter_headers(recipients=["alice@example.com"]).get)
    with db.session() as session:
        m = store(session, NODE, pushed, utcnow()).message_id
    gateways = [RspamdGateway(node_for(relay.port), db) for _ in range(4)]
    queue = gateways[0].find(m)[0].queue
    barrier, outcomes = threading.Barrier(len(gateways)), []

    def one(gateway: RspamdGateway) -> None:
        barrier.wait()
        try:
            outcomes.append(gateway.release(m, queue))
        except Exception as exc:  # noqa: BLE001 - "another attempt is re-injecting": a retry later
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=one, args=(g,)) for g in gateways]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for gateway in gateways:
        gateway.close()
    assert len(relay.messages()) == 1, outcomes
    assert 1 in outcomes and set(outcomes) <= {1, "GatewayError"}


# -- learn-ham -------------------------------------------------------------------------------------


class _Http:
    """A tiny real HTTP server answering with ``app``; records each request's headers."""

    def __init__(self, answer: Any) -> None:
        self.seen: list[dict[str, str]] = []
        self.answer = answer
        self.server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_port

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @Request.application  # type: ignore[arg-type]
    def _app(self, request: Request) -> Response:
        self.seen.append(dict(request.headers))
        request.get_data()
        return self.answer(request)


def test_learn_ham_follows_no_redirect_with_the_controller_password(db: Database) -> None:
    """requests follows redirects and strips only Authorization on the way: the custom
    ``Password`` header (Rspamd's enable_password) and the whole message go to any host the
    controller, or anyone on a plain-http path to it, redirects to."""
    elsewhere = _Http(lambda request: Response('{"success":true}', 200))
    controller = _Http(
        lambda request: Response("", 307, headers={"Location": f"http://localhost:{elsewhere.port}/learnham"})
    )
    gateway = RspamdGateway(
        node_for(1, controller_url=f"http://127.0.0.1:{controller.port}", controller_password=CONTROLLER_PASSWORD),
        db,
    )
    try:
        pushed = parse_push(raw_message(), exporter_headers().get)
        with db.session() as session:
            m = store(session, NODE, pushed, utcnow()).message_id
        try:
            gateway.learn_ham(m)
        except Exception:  # noqa: BLE001, S110 - refusing the redirect is the right outcome
            pass
    finally:
        gateway.close()
        controller.stop()
        elsewhere.stop()
    assert controller.seen, "the controller was not asked"
    leaked = [h for h in elsewhere.seen if CONTROLLER_PASSWORD in h.values()]
    assert not leaked, "the controller password went to the redirect's target"


@pytest.mark.parametrize("status", [500, 400])
def test_a_controller_that_echoes_the_password_shows_it_nowhere(db: Database, status: int) -> None:
    """The controller's answer is quoted into the error (the job's error, the admin console,
    the log, check-config's line) unredacted; the Halon gateway redacts its credentials from
    exactly such echoes (tests/security/test_gateway_secrets.py)."""
    echo = _Http(lambda request: Response(f"bad request, Password: {request.headers.get('Password')}", status))
    gateway = RspamdGateway(
        node_for(1, controller_url=f"http://127.0.0.1:{echo.port}", controller_password=CONTROLLER_PASSWORD),
        db,
    )
    try:
        pushed = parse_push(raw_message(), exporter_headers().get)
        with db.session() as session:
            m = store(session, NODE, pushed, utcnow()).message_id
        with pytest.raises(GatewayError) as learned:
            gateway.learn_ham(m)
        ok, detail = gateway.check_controller()
    finally:
        gateway.close()
        echo.stop()
    assert not ok
    assert CONTROLLER_PASSWORD not in str(learned.value)
    assert CONTROLLER_PASSWORD not in detail


def test_a_controller_that_answers_slowly_is_cut_at_the_nodes_timeout(db: Database) -> None:
    """requests' timeout bounds each read, not the answer: a controller (or anything at its
    address) that sends a byte every 0.3 s keeps the worker's job as long as it likes, here
    12 s with timeout_seconds = 0.5 (the relay bounds its whole conversation, to 8x + 5 s)."""

    def drip(request: Request) -> Response:
        def body() -> Iterator[bytes]:
            for _ in range(40):
                time.sleep(0.3)
                yield b" "

        return Response(body(), 500)

    slow = _Http(drip)
    node = node_for(1, controller_url=f"http://127.0.0.1:{slow.port}", controller_password=CONTROLLER_PASSWORD)
    node = dataclasses.replace(node, timeout_seconds=0.5)
    gateway = RspamdGateway(node, db)
    try:
        pushed = parse_push(raw_message(), exporter_headers().get)
        with db.session() as session:
            m = store(session, NODE, pushed, utcnow()).message_id
        started = time.monotonic()
        with pytest.raises(GatewayError):
            gateway.learn_ham(m)
        took = time.monotonic() - started
    finally:
        gateway.close()
        slow.stop()
    assert took < 8 * node.timeout_seconds + 5, f"learn-ham took {took:.0f} s with timeout_seconds = 0.5"


@pytest.mark.parametrize(("extra", "status"), [(0, 200), (1, 413)], ids=["exactly-the-cap", "one-byte-over"])
def test_a_chunked_push_at_the_cap_is_kept_and_one_byte_over_is_refused(
    database_url: str, simulator: SimulatorServer, smtp_server: CaptureServer, relay: CaptureServer,
    extra: int, status: int,
) -> None:  # fmt: skip
    """Holds: no Content-Length (chunked, real HTTP); the cap is exact, and the copy kept is
    the whole message, never one cut at the cap."""
    content = raw_message(body="x" * 5000 + "\n")
    stack = build_rspamd_stack(database_url, simulator, smtp_server, relay.port, max_message_bytes=len(content))
    server = make_server("127.0.0.1", 0, stack.app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    body = content + b"y" * extra
    try:
        response = requests.post(
            f"http://127.0.0.1:{server.server_port}/gateway/v1/rspamd/{NODE}",
            data=(body[i : i + 1000] for i in range(0, len(body), 1000)),
            headers={**exporter_headers(), "Content-Type": "message/rfc822"},
            auth=(NODE, PUSH_PASSWORD),
            timeout=10,
        )
        assert response.status_code == status, response.text
        with stack.services.db.session() as session:
            kept = [zlib.decompress(c) for c in session.scalars(select(StoredMessage.content))]
        assert kept == ([body] if status == 200 else [])
    finally:
        server.shutdown()
        server.server_close()
        close_stack(stack)


# -- following the docs ----------------------------------------------------------------------------


def test_the_documented_nginx_takes_pushes_up_to_the_default_cap() -> None:
    """docs/deploy/nginx.conf caps bodies at 64 KiB for the whole server; the location that
    serves the push (nginx picks the longest matching prefix) must take the node's default
    max_message_bytes (25 MiB), or nginx answers 413 to any rejected message with an
    attachment, the rule defers it, and it is deferred until the sender's MTA gives up."""
    conf = re.sub(r"#.*", "", (ROOT / "docs" / "deploy" / "nginx.conf").read_text())
    server_cap = re.search(r"^\s*client_max_body_size\s+(\S+);", conf, re.M)
    push_path = f"/gateway/v1/rspamd/{NODE}"
    locations = {m.group(1): m.group(2) for m in re.finditer(r"location\s+(/\S*)\s*\{(.*?)\}", conf, re.S)}
    serving = max((prefix for prefix in locations if push_path.startswith(prefix)), key=len)
    local = re.search(r"client_max_body_size\s+(\S+);", locations[serving])
    effective = (local or server_cap).group(1) if (local or server_cap) else "1m"  # nginx's default
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    number = int(effective[:-1]) * units[effective[-1].lower()] if effective[-1].isalpha() else int(effective)
    default_cap = NodeSettings(name=NODE, type="rspamd").max_message_bytes  # 25 MiB
    assert serving == "/gateway/v1/rspamd/"
    assert number == 0 or number >= default_cap, f"nginx caps {serving} at {effective}"
