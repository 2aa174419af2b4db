"""POST /gateway/v1/rspamd/<node>: Rspamd's metadata_exporter pushes a rejected message and
the service keeps it (SQLite and PostgreSQL). Authenticated, idempotent, bounded."""

from __future__ import annotations

import json
import logging
import threading
import zlib
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from prometheus_client import REGISTRY
from sqlalchemy import select
from werkzeug.serving import make_server

from release.db.models import StoredMessage
from release.devtools.mailcapture import CaptureServer
from release.devtools.simulator import SimulatorServer
from release.gateway.stored import message_id_of
from tests.support.rspamd import NODE, PUSH_PASSWORD, build_rspamd_stack, exporter_headers, push, raw_message
from tests.support.stack import Stack, close_stack


@pytest.fixture
def rspamd_stack(
    database_url: str, simulator: SimulatorServer, smtp_server: CaptureServer, relay: CaptureServer
) -> Iterator[Stack]:
    built = build_rspamd_stack(database_url, simulator, smtp_server, relay.port, max_message_bytes=200_000)
    yield built
    close_stack(built)


def kept(stack: Stack) -> list[tuple[str, str, bytes, list[tuple[str, str | None]]]]:
    """(message id, sender, bytes, [(recipient, quarantine)]) of every stored message."""
    with stack.services.db.session() as session:
        messages = session.scalars(select(StoredMessage).order_by(StoredMessage.id)).all()
        return [
            (
                m.message_id,
                m.envelope_sender,
                zlib.decompress(m.content),
                [(c.recipient, c.quarantine) for c in m.copies],
            )
            for m in messages
        ]


def pushes(outcome: str) -> float:
    return REGISTRY.get_sample_value("release_rspamd_pushes_total", {"node": NODE, "outcome": outcome}) or 0.0


def test_a_push_is_kept_once_compressed_with_one_copy_per_recipient(rspamd_stack: Stack) -> None:
    content = raw_message(body="Please find the invoice attached.\n" * 200)
    first = push(rspamd_stack.client, content)
    assert first.status_code == 200, first.text
    assert first.get_json() == {"status": "stored", "message": message_id_of(content), "copies": 2}

    # The exporter (or the sending MTA, after a deferral) pushes it again.
    again = push(rspamd_stack.client, content)
    assert again.status_code == 200
    assert again.get_json() == {"status": "already stored", "message": message_id_of(content), "copies": 0}

    [(message_id, sender, stored_bytes, copies)] = kept(rspamd_stack)
    assert message_id == message_id_of(content) and len(message_id) == 32
    assert sender == "anna@partner.example"
    assert stored_bytes == content  # byte for byte
    assert copies == [("alice@example.com", "short"), ("bob@example.com", "short")]
    with rspamd_stack.services.db.session() as session:
        row = session.scalars(select(StoredMessage)).one()
        assert row.stored_size < row.size / 5  # compressed at rest
        assert row.queue_id == "4Qx9Lm2Zb7z9" and row.spam_score == 15.0 and row.sender_ip == "198.51.100.7"
        assert row.subject == "Invoice 2026-118" and "GTUBE(0.00)" in row.symbols


def test_the_same_bytes_for_another_recipient_add_only_that_copy(rspamd_stack: Stack) -> None:
    content = raw_message()
    push(rspamd_stack.client, content, headers=exporter_headers(recipients=["alice@example.com"]))
    response = push(
        rspamd_stack.client, content, headers=exporter_headers(recipients=["ALICE@example.com", "carol@example.com"])
    )
    assert response.get_json()["copies"] == 1
    [(_, _, _, copies)] = kept(rspamd_stack)
    assert [r for r, _ in copies] == ["alice@example.com", "carol@example.com"]


def test_a_recipient_is_kept_as_spelled_and_the_same_mailbox_in_another_case_is_one_copy(
    rspamd_stack: Stack,
) -> None:
    """The local part's case may matter to the mailbox it is given back to: kept as the
    envelope spelt it; the same address twice in other cases is one copy."""
    recipients = ["Alice.Smith@Example.com", "alice.smith@example.com", "bob@example.com"]
    push(rspamd_stack.client, raw_message(), headers=exporter_headers(recipients=recipients))
    [(_, _, _, copies)] = kept(rspamd_stack)
    assert [r for r, _ in copies] == ["Alice.Smith@Example.com", "bob@example.com"]


def test_the_null_sender_is_kept_as_such(rspamd_stack: Stack) -> None:
    assert push(rspamd_stack.client, raw_message(), headers=exporter_headers(sender="")).status_code == 200
    assert kept(rspamd_stack)[0][1] == ""


@pytest.mark.parametrize(
    ("password", "user"),
    [(None, None), ("wrong-password", None), (PUSH_PASSWORD, "mx1"), (PUSH_PASSWORD[:-1], None)],
    ids=["no-auth", "wrong-password", "wrong-user", "truncated-password"],
)
def test_a_push_without_the_node_credentials_is_refused_and_logged(
    rspamd_stack: Stack, caplog: pytest.LogCaptureFixture, password: str | None, user: str | None
) -> None:
    before = pushes("unauthorized")
    with caplog.at_level(logging.WARNING):
        response = push(rspamd_stack.client, raw_message(), password=password, user=user)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert response.get_json()["error"] == "unauthorized"
    assert kept(rspamd_stack) == []
    assert pushes("unauthorized") == before + 1
    assert any("push to node mx3 refused" in r.getMessage() for r in caplog.records)
    assert PUSH_PASSWORD not in caplog.text and "wrong-password" not in caplog.text


def test_a_push_over_the_size_cap_is_413_counted_and_not_kept(rspamd_stack: Stack) -> None:
    before = pushes("too_large")
    big = raw_message(body=("y" * 75 + "\n") * 3000)
    assert len(big) > 200_000
    response = push(rspamd_stack.client, big)
    assert response.status_code == 413
    assert "200000 bytes" in response.get_json()["message"]
    assert pushes("too_large") == before + 1
    assert kept(rspamd_stack) == []


def test_a_chunked_push_over_the_cap_is_refused_too(rspamd_stack: Stack) -> None:
    """No Content-Length (chunked, over real HTTP): the cap stops the read itself."""
    big = raw_message(body=("y" * 75 + "\n") * 3000)
    server = make_server("127.0.0.1", 0, rspamd_stack.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        response = requests.post(
            f"http://127.0.0.1:{server.server_port}/gateway/v1/rspamd/{NODE}",
            data=(big[i : i + 4096] for i in range(0, len(big), 4096)),  # a generator: sent chunked
            headers={**exporter_headers(), "Content-Type": "message/rfc822"},
            auth=(NODE, PUSH_PASSWORD),
            timeout=10,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert response.status_code == 413
    assert kept(rspamd_stack) == []


@pytest.mark.parametrize(
    ("headers", "needle"),
    [
        ({"X-Rspamd-rcpt": '["alice@example.com"]'}, "X-Rspamd-From"),
        ({"X-Rspamd-from": "anna@partner.example"}, "X-Rspamd-Rcpt"),
        ({**exporter_headers(), "X-Rspamd-rcpt": "alice@example.com"}, "JSON list"),
        ({**exporter_headers(), "X-Rspamd-rcpt": "[]"}, "JSON list"),
        ({**exporter_headers(), "X-Rspamd-rcpt": '["a b@example.com"]'}, "not an address"),
        ({**exporter_headers(), "X-Rspamd-from": "anna <x>@example"}, "not an address"),
        # Nested deeper than Python's parser recurses (found by the guard: a RecursionError, 500).
        ({**exporter_headers(), "X-Rspamd-rcpt": "[" * 1000}, "JSON list"),
        ({**exporter_headers(), "X-Rspamd-rcpt": '{"a":' * 1000 + "1" + "}" * 1000}, "JSON list"),
        # 320 characters (JSON escapes) that lower() made 640 (a 500 on PostgreSQL's varchar(320)
        # when recipients were lower-cased); no "@" either: not an address.
        ({**exporter_headers(), "X-Rspamd-rcpt": '["' + "\\u0130" * 320 + '"]'}, "not an address"),
    ],
    ids=[
        "no-from",
        "no-rcpt",
        "rcpt-not-json",
        "no-recipients",
        "rcpt-with-space",
        "bad-sender",
        "rcpt-deep",
        "rcpt-deep-objects",
        "rcpt-longer-in-lower-case",
    ],
)
def test_a_push_without_a_usable_envelope_is_400(rspamd_stack: Stack, headers: dict[str, str], needle: str) -> None:
    response = push(rspamd_stack.client, raw_message(), headers=headers)
    assert response.status_code == 400
    assert needle in response.get_json()["message"]
    assert kept(rspamd_stack) == []


def test_deeply_nested_symbols_are_ignored_not_a_crash(rspamd_stack: Stack) -> None:
    """Found by the guard (tests/security/test_hostile_routes.py): the symbols are optional,
    so JSON nested past the parser's recursion limit keeps the message without them (was a 500)."""
    headers = {**exporter_headers(), "X-Rspamd-symbols": "[" * 1000 + "]" * 1000}
    response = push(rspamd_stack.client, raw_message(), headers=headers)
    assert response.status_code == 200, response.text
    with rspamd_stack.services.db.session() as session:
        assert session.scalars(select(StoredMessage.symbols)).one() == ""


@pytest.mark.parametrize("subject", [b"Invoice\x00 2026\x1b-118", b"=?utf-8?q?Invoice=00_2026=1B-118?="],
                         ids=["raw", "encoded-word"])  # fmt: skip
def test_a_subject_with_a_nul_is_kept_without_its_controls(rspamd_stack: Stack, subject: bytes) -> None:
    """Found by the guard (tests/security/test_hostile_routes.py): PostgreSQL's text cannot
    hold NUL, so a Subject carrying one was a DataError (500) and the message was lost."""
    content = raw_message().replace(b"Subject: Invoice 2026-118", b"Subject: " + subject, 1)
    response = push(rspamd_stack.client, content)
    assert response.status_code == 200, response.text
    with rspamd_stack.services.db.session() as session:
        assert session.scalars(select(StoredMessage.subject)).one() == "Invoice 2026-118"


def test_an_empty_or_form_body_is_refused(rspamd_stack: Stack) -> None:
    assert push(rspamd_stack.client, b"").status_code == 400
    form = push(rspamd_stack.client, b"a=b", content_type="application/x-www-form-urlencoded")
    assert form.status_code == 415
    assert kept(rspamd_stack) == []


def test_only_rspamd_nodes_take_pushes(rspamd_stack: Stack) -> None:
    assert push(rspamd_stack.client, raw_message(), node="mx1").status_code == 404
    assert rspamd_stack.client.get(f"/gateway/v1/rspamd/{NODE}").status_code == 405


def test_concurrent_pushes_of_one_message_keep_it_once(rspamd_stack: Stack) -> None:
    content = raw_message()
    statuses: list[int] = []
    barrier = threading.Barrier(6)

    def one() -> None:
        client = rspamd_stack.new_client()
        barrier.wait()
        statuses.append(push(client, content).status_code)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 6
    [(_, _, _, copies)] = kept(rspamd_stack)
    assert len(copies) == 2


def test_a_metadata_header_sent_twice_is_refused(rspamd_stack: Stack) -> None:
    """A recipient list smuggled in beside the real one (a line break decoded from a subject)
    must not decide who is mailed: WSGI joins the two with ", ", which is no JSON list."""
    headers = list(exporter_headers().items()) + [("X-Rspamd-rcpt", '["victim@example.org"]')]
    response = rspamd_stack.client.post(f"/gateway/v1/rspamd/{NODE}", data=raw_message(), headers=headers,
                                        auth=(NODE, PUSH_PASSWORD), content_type="message/rfc822")  # fmt: skip
    assert response.status_code == 400
    assert "X-Rspamd-Rcpt must be a JSON list" in response.get_json()["message"]
    assert kept(rspamd_stack) == []


def test_the_gateway_openapi_document_describes_the_push(rspamd_stack: Stack) -> None:
    """/gateway/v1/openapi.json is valid OpenAPI 3.1, lists every /gateway/v1 route, and its
    push (Basic auth, the X-Rspamd-* headers, the raw message) works as documented: the
    document's own examples make a push the service keeps."""
    doc = rspamd_stack.client.get("/gateway/v1/openapi.json").get_json()
    schemathesis.openapi.from_dict(doc).validate()  # raises on a document OpenAPI 3.1 refuses
    rules = {r.rule for r in rspamd_stack.app.url_map.iter_rules() if r.rule.startswith("/gateway/v1/")}
    documented = {"/gateway/v1" + path.replace("{node}", "<node>") for path in doc["paths"]}
    assert rules - {"/gateway/v1/openapi.json"} == documented

    operation = doc["paths"]["/rspamd/{node}"]["post"]
    [name] = operation["security"][0]
    scheme = doc["components"]["securitySchemes"][name]
    assert (scheme["type"], scheme["scheme"]) == ("http", "basic")
    headers = {}
    for param in operation["parameters"]:
        if param["in"] == "header":
            media = param.get("content", {}).get("application/json")
            headers[param["name"]] = json.dumps(media["example"]) if media else param["example"]
    required = {p["name"] for p in operation["parameters"] if p["in"] == "header" and p["required"]}
    assert required == {"X-Rspamd-from", "X-Rspamd-rcpt"}
    assert set(headers) >= {"X-Rspamd-qid", "X-Rspamd-ip", "X-Rspamd-score", "X-Rspamd-symbols"}
    body = operation["requestBody"]["content"]
    assert list(body)[:2] == ["message/rfc822", "text/plain"]
    assert {"200", "400", "401", "404", "413", "415"} <= set(operation["responses"])
    example = body["message/rfc822"]["example"].encode()
    response = push(rspamd_stack.client, example, headers=headers)
    assert response.status_code == 200, response.text
    assert response.get_json() == {"status": "stored", "message": message_id_of(example), "copies": 1}
