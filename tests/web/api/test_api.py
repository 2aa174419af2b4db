"""/api/v1: public release status, API-key admin endpoints (audited), errors as JSON."""

from __future__ import annotations

import hashlib
import logging
import secrets
from typing import Any

import pytest
from sqlalchemy import select

from release.config import ConfigError, settings_from_mapping
from release.core import retention
from release.db.models import AuditEntry, Job, Recipient
from release.web.admin import auth
from release.web.headers import RedactTokens
from tests.support.config import make_config
from tests.support.console import ADMIN, Console, seed_report
from tests.support.stack import Stack, StackFactory, drain_due

KEY = secrets.token_urlsafe(32)
HASHED_KEY = secrets.token_urlsafe(32)
KEY_ID = hashlib.sha256(KEY.encode()).hexdigest()[:12]


def bearer(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def api_stack(make_stack: StackFactory) -> Stack:
    digest = hashlib.sha256(HASHED_KEY.encode()).hexdigest()
    return make_stack(api={"keys": [KEY, f"sha256:{digest}"]})


def notified(stack: Stack, recipients: list[str]) -> Console:
    console = Console(stack)
    console.reported(recipients)
    return console


def test_public_release_status_by_token(api_stack: Stack) -> None:
    from tests.support.visitor import release_token_from

    notified(api_stack, ["bob@example.test"])
    token = release_token_from(api_stack.smtp.messages()[0].message)
    response = api_stack.client.get(f"/api/v1/releases/{token}")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json is not None
    assert response.json["state"] == "notified" and response.json["can_release"] is True
    assert "bob@example.test" not in response.text
    missing = api_stack.client.get("/api/v1/releases/" + "A" * 43)
    assert missing.status_code == 404 and missing.json == {"error": "not_found", "message": missing.json["message"]}


def test_admin_endpoints_need_a_key(api_stack: Stack) -> None:
    for method, path in [("GET", "/api/v1/reports"), ("GET", "/api/v1/retention"),
                         ("POST", "/api/v1/recipients/1/release")]:  # fmt: skip
        for headers in ({}, bearer("wrong-" + KEY), {"Authorization": f"Basic {KEY}"}, {"Authorization": "Bearer "}):
            response = api_stack.client.open(path, method=method, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.json is not None and response.json["error"] == "unauthorized"
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert api_stack.client.get("/api/v1/retention", headers=bearer(HASHED_KEY)).status_code == 200


def test_a_signed_in_admin_cookie_is_not_a_key(api_stack: Stack) -> None:
    with api_stack.services.db.session() as session:
        auth.create_admin(session, ADMIN[0], ADMIN[1], "admin", actor="test")
        session.commit()
    client = Console(api_stack).login()
    assert client.get("/admin/reports").status_code == 200
    assert client.post("/api/v1/recipients/1/release").status_code == 401
    assert client.get("/api/v1/reports").status_code == 401


def test_no_keys_configured_means_no_admin_access(stack: Stack) -> None:
    assert stack.client.get("/api/v1/reports", headers=bearer()).status_code == 401


def test_list_reports_paged_and_filtered(api_stack: Stack) -> None:
    with api_stack.services.db.session() as session:
        for i in range(55):
            session.add(seed_report(session, state="notified" if i % 5 else "failed", subject=f"s{i}"))
        session.commit()
    first = api_stack.client.get("/api/v1/reports", headers=bearer())
    assert first.status_code == 200 and first.json is not None
    assert (first.json["total"], first.json["pages"], len(first.json["reports"])) == (55, 2, 50)
    assert first.json["reports"][0]["subject"] == "s54"  # newest first
    second = api_stack.client.get("/api/v1/reports?page=2", headers=bearer()).json
    assert second is not None and len(second["reports"]) == 5 and second["page"] == 2
    failed = api_stack.client.get("/api/v1/reports?state=failed", headers=bearer()).json
    assert failed is not None and failed["total"] == 11
    assert {r["state"] for r in failed["reports"]} == {"failed"}
    assert failed["reports"][0]["recipients"][0]["address"] == "rcpt@example.com"
    for query in ("state=nope", "page=0", "page=x", "page=-1"):
        bad = api_stack.client.get(f"/api/v1/reports?{query}", headers=bearer())
        assert bad.status_code == 400 and bad.json is not None and bad.json["error"] == "bad_request", query


def test_release_a_copy_goes_through_the_admin_action_and_is_audited(api_stack: Stack) -> None:
    console = notified(api_stack, ["bob@example.test", "carol@example.test"])
    with api_stack.services.db.session() as session:
        bob = session.scalar(select(Recipient).where(Recipient.address == "bob@example.test"))
        assert bob is not None
    # No CSRF token: the API is exempt because it needs the bearer key.
    response = api_stack.client.post(f"/api/v1/recipients/{bob.id}/release", headers=bearer())
    assert response.status_code == 202, response.text
    assert response.json == {"id": bob.id, "state": "release_requested"}
    with api_stack.services.db.session() as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "copy.release_requested"))
        assert entry is not None and entry.actor == f"api-key:{KEY_ID}" and entry.target == f"recipient:{bob.id}"
        assert session.scalar(select(Job).where(Job.kind == "release", Job.ref_id == bob.id)) is not None
    drain_due(api_stack.worker)
    assert console.recipient(bob.id).state == "released"
    assert len(api_stack.sim.active()) + len(api_stack.sim.delivered()) == 1
    again = api_stack.client.post(f"/api/v1/recipients/{bob.id}/release", headers=bearer())
    assert again.status_code == 409 and again.json is not None and again.json["error"] == "refused"
    for missing in ("999999", str(2**40)):
        gone = api_stack.client.post(f"/api/v1/recipients/{missing}/release", headers=bearer())
        assert gone.status_code == 404 and gone.json is not None


def test_read_retention(api_stack: Stack) -> None:
    defaults = api_stack.services.settings.retention
    response = api_stack.client.get("/api/v1/retention", headers=bearer())
    assert response.json == {"short_hours": defaults.short_hours, "long_days": defaults.long_days,
                             "record_days": defaults.record_days}  # fmt: skip
    with api_stack.services.db.session() as session:
        retention.set_retention(session, {"short_hours": 12, "long_days": 10, "record_days": 30}, "test", defaults)
        session.commit()
    assert api_stack.client.get("/api/v1/retention", headers=bearer()).json == {
        "short_hours": 12, "long_days": 10, "record_days": 30}  # fmt: skip


def test_unknown_api_paths_and_methods_answer_json(api_stack: Stack) -> None:
    missing = api_stack.client.get("/api/v1/nothing-here")
    assert missing.status_code == 404 and missing.is_json
    wrong = api_stack.client.delete("/api/v1/retention", headers=bearer())
    assert wrong.status_code == 405 and wrong.is_json


def test_openapi_document_describes_the_routes(api_stack: Stack) -> None:
    doc = api_stack.client.get("/api/v1/openapi.json").json
    assert doc is not None and doc["openapi"].startswith("3.")
    assert doc["servers"] == [{"url": "https://release.example.test/api/v1"}]
    api_rules = {r.rule for r in api_stack.app.url_map.iter_rules() if r.rule.startswith("/api/v1/")}
    documented = {
        "/api/v1" + p.replace("{token}", "<token>").replace("{id}", "<id:recipient_id>") for p in doc["paths"]
    }
    assert api_rules - {"/api/v1/openapi.json"} == documented


@pytest.mark.parametrize(
    ("keys", "key"),
    [
        (["demo"], "api.keys[0]"),
        (["short"], "api.keys[0]"),
        (["sha256:abc"], "api.keys[0]"),
        ([KEY, "change-me"], "api.keys[1]"),
    ],  # fmt: skip
)
def test_weak_or_malformed_keys_refused(keys: list[str], key: str, tmp_path: Any, simulator: Any) -> None:
    config = make_config(f"sqlite:///{tmp_path / 'x.sqlite3'}", simulator, 25, api={"keys": keys})
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(config)
    assert caught.value.key == key
    assert KEY not in repr(settings_from_mapping(make_config(f"sqlite:///{tmp_path / 'y.db'}", simulator, 25,
                                                             api={"keys": [KEY]})))  # fmt: skip


def test_api_tokens_are_redacted_from_access_logs() -> None:
    token = secrets.token_urlsafe(32)
    record = logging.LogRecord(
        "werkzeug", logging.INFO, __file__, 1, '"GET /api/v1/releases/%s HTTP/1.1" 200', (token,), None
    )
    RedactTokens().filter(record)
    assert token not in record.getMessage() and "/api/v1/releases/[token]" in record.getMessage()
    plain = logging.LogRecord("werkzeug", logging.INFO, __file__, 1, '"GET /release/%s HTTP/1.1" 200', (token,), None)
    RedactTokens().filter(plain)
    assert plain.getMessage() == '"GET /release/[token] HTTP/1.1" 200'


def test_set_retention_validates_audits_and_applies_at_once(api_stack: Stack) -> None:
    put = api_stack.client.put
    wanted = {"short_hours": 12, "long_days": 10, "record_days": 30}
    assert put("/api/v1/retention", json=wanted).status_code == 401
    changed = put("/api/v1/retention", json=wanted, headers=bearer())
    assert changed.status_code == 200 and changed.json == wanted
    assert api_stack.client.get("/api/v1/retention", headers=bearer()).json == wanted
    with api_stack.services.db.session() as session:
        audited = session.scalars(select(AuditEntry).where(AuditEntry.action == "retention.changed")).all()
    new_values = {a.target: a.detail.split(" ")[-1] for a in audited}
    assert new_values == {retention.KEYS[name]: str(value) for name, value in wanted.items()}
    assert all(a.actor.startswith("api-key:") for a in audited)

    too_short = put("/api/v1/retention", json={**wanted, "long_days": 0}, headers=bearer())
    assert too_short.status_code == 422 and "Long retention" in too_short.json["message"]
    for bad in ([1, 2, 3], {"short_hours": "12", "long_days": 10, "record_days": 30}, {"short_hours": 12}):
        assert put("/api/v1/retention", json=bad, headers=bearer()).status_code == 400
    assert api_stack.client.get("/api/v1/retention", headers=bearer()).json == wanted  # nothing half-applied


def test_every_api_error_has_one_shape(make_stack: StackFactory) -> None:
    """Errors the framework raises (unknown path, wrong method) and the gateway endpoint's own
    answer the way /api/v1's views do: a stable code and a sentence, never a page title."""
    stack = make_stack(api={"keys": [KEY]}, policy={"allowlist_keys": [KEY]})
    unknown = stack.client.get("/api/v1/no-such-thing")
    wrong_method = stack.client.delete("/api/v1/retention", headers=bearer())
    no_key = stack.client.get("/gateway/v1/allowed?recipient=a@example.test&sender=b@example.test")
    missing = stack.client.get("/gateway/v1/allowed", headers=bearer())
    for response, status, code in [(unknown, 404, "not_found"), (wrong_method, 405, "method_not_allowed"),
                                   (no_key, 401, "unauthorized"), (missing, 400, "bad_request")]:  # fmt: skip
        assert response.status_code == status
        assert response.json is not None and set(response.json) == {"error", "message"}
        assert response.json["error"] == code and response.json["message"]
    assert no_key.headers["WWW-Authenticate"] == 'Bearer realm="gateway"'
