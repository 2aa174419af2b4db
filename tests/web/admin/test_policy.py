"""Release policy and the recipient's choices, over HTTP on real parts (both databases)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from release.db.models import AuditEntry, Job, Report
from release.devtools.mailcapture import text_and_html
from tests.support.console import VIEWER, Console
from tests.support.visitor import csrf_token, release_token_from, report_path, submit_report

GATEWAY_KEY = "gateway-allowlist-key-0123456789"
HIGH_RISK = "mailquarantine:5"


@pytest.fixture
def stack_sections() -> dict[str, dict[str, Any]]:
    """The conftest stack, with a release policy and an allow-list key configured."""
    return {"policy": {"max_spam_score": 5.0, "high_risk_quarantines": [HIGH_RISK], "allowlist_keys": [GATEWAY_KEY]}}


def _reported(console: Console, *, score: float | None, quarantine: str = "mailquarantine:1") -> tuple[str, str]:
    """A message reported and notified; returns (transaction, release token)."""
    stack = console.stack
    tx = stack.sim.add_message("anna@partner.example", ["rita@example.com"], "Invoice", quarantine=quarantine,
                               score=score)  # fmt: skip
    assert submit_report(stack.new_client(), stack, report_path(stack, tx)).status_code == 303
    stack.worker.drain()
    return tx, release_token_from(stack.smtp.messages()[-1].message)


def _report(console: Console, tx: str) -> Report:
    with console.stack.services.db.session() as session:
        report = session.scalar(select(Report).where(Report.message_id == tx))
        assert report is not None
        _ = report.recipients
        return report


def _choose(console: Console, token: str, choice: str) -> int:
    client = console.stack.new_client()
    page = client.get(f"/release/{token}")
    return client.post(f"/release/{token}", data={"csrf_token": csrf_token(page.text), "choice": choice}).status_code


def _state(console: Console, tx: str) -> str:
    return _report(console, tx).recipients[0].state


def _sim_states(console: Console, tx: str) -> set[str]:
    return {c.state for c in console.stack.sim.copies(tx)}


def _allowed(console: Console, key: str | None, **params: str) -> tuple[int, object]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = console.stack.new_client().get("/gateway/v1/allowed", query_string=params, headers=headers)
    return response.status_code, response.get_json()


def test_high_score_needs_approval_and_approve_releases(console: Console) -> None:
    tx, token = _reported(console, score=9.5)
    page = console.stack.new_client().get(f"/release/{token}")
    assert "Request release" in page.text and "Release to my mailbox" not in page.text
    assert "always allow" not in page.text
    assert _choose(console, token, "release") == 303
    assert _state(console, tx) == "approval_pending"
    assert [j.kind for j in console.jobs("release")] == []  # no release job: an admin decides
    assert "Waiting for approval" in console.stack.new_client().get(f"/release/{token}").text
    console.stack.worker.drain()
    assert _sim_states(console, tx) == {"hold"}

    admin = console.login()
    assert "rita@example.com" in admin.get("/admin/approvals").text
    rid = _report(console, tx).recipients[0].id
    assert "decide</a>" in admin.get(f"/admin/reports/{_report(console, tx).id}").text
    path = f"/admin/approvals/{rid}/approve"
    assert admin.post(path, data={"reason": "known partner"}).status_code == 400  # CSRF required
    assert _state(console, tx) == "approval_pending"
    assert console.post(admin, path, "/admin/approvals", {"reason": "known partner"}).status_code == 303
    with console.stack.services.db.session() as session:
        audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "copy.release_approved")).all()
        assert [(a.actor, "known partner" in a.detail) for a in audit] == [("alice-admin", True)]
    console.stack.smtp.clear()
    console.stack.worker.drain()
    assert _state(console, tx) == "released"
    assert _sim_states(console, tx) == {"delivered"}
    (outcome,) = [m.message for m in console.stack.smtp.messages()]
    text, html = text_and_html(outcome)
    assert "approved" in outcome["Subject"] and "known partner" in text and "known partner" in html
    assert "We met" not in outcome.as_string()  # the sender's comment never goes into mail


def test_deny_mails_the_recipient_and_keeps_the_copy(console: Console) -> None:
    tx, token = _reported(console, score=None, quarantine=HIGH_RISK)
    assert _report(console, tx).recipients[0].held_in == HIGH_RISK
    assert _choose(console, token, "release") == 303
    assert _state(console, tx) == "approval_pending"
    rid = _report(console, tx).recipients[0].id
    viewer = console.login(VIEWER)
    assert "read-only" in viewer.get("/admin/approvals").text
    denied = console.post(viewer, f"/admin/approvals/{rid}/deny", "/admin/approvals", {"reason": "phishing"})
    assert denied.status_code == 403
    admin = console.login()
    # No reason: refused with a message, nothing changes.
    console.post(admin, f"/admin/approvals/{rid}/deny", "/admin/approvals", {"reason": ""})
    assert _state(console, tx) == "approval_pending"
    console.post(admin, f"/admin/approvals/{rid}/deny", "/admin/approvals", {"reason": "looks like phishing"})
    assert _state(console, tx) == "release_denied"
    console.stack.smtp.clear()
    console.stack.worker.drain()
    assert _sim_states(console, tx) == {"hold"}
    (outcome,) = [m.message for m in console.stack.smtp.messages()]
    assert outcome["To"] == "rita@example.com" and "refused" in outcome["Subject"]
    assert "looks like phishing" in text_and_html(outcome)[0]
    assert "Release refused" in console.stack.new_client().get(f"/release/{token}").text
    sender = console.stack.new_client().get(report_path(console.stack, tx))
    assert "release refused by an administrator" in sender.text
    # A second decision is refused (final state).
    console.post(admin, f"/admin/approvals/{rid}/approve", "/admin/approvals", {"reason": "changed my mind"})
    assert _state(console, tx) == "release_denied"


def test_delete_removes_the_copy_on_the_gateway(console: Console) -> None:
    tx, token = _reported(console, score=1.0)
    client = console.stack.new_client()
    assert client.post(f"/release/{token}", data={"choice": "delete"}).status_code == 400  # CSRF required
    assert _state(console, tx) == "notified"
    assert _choose(console, token, "bogus") == 400
    csrf = csrf_token(client.get(f"/release/{token}").text)
    assert _choose(console, token, "delete") == 303
    assert _state(console, tx) == "deleted"
    page = console.stack.new_client().get(f"/release/{token}")
    assert "Deleted" in page.text and "Release to my mailbox" not in page.text
    console.stack.worker.drain()
    assert _sim_states(console, tx) == {"deleted"}
    assert [j.state for j in console.jobs("discard")] == ["done"]
    # A page opened before the deletion cannot release it any more.
    assert client.post(f"/release/{token}", data={"csrf_token": csrf, "choice": "release"}).status_code == 303
    assert _state(console, tx) == "deleted"


def test_release_and_always_allow_feeds_the_gateway_endpoint(console: Console) -> None:
    tx, token = _reported(console, score=2.0)
    query = {"recipient": "Rita@Example.com", "sender": "anna@partner.example"}
    assert _allowed(console, None, **query)[0] == 401
    assert _allowed(console, "wrong-key", **query)[0] == 401
    assert _allowed(console, GATEWAY_KEY, **query) == (200, {"allowed": False})
    assert _allowed(console, GATEWAY_KEY, recipient="x@example.com")[0] == 400
    assert "Release and always allow this sender" in console.stack.new_client().get(f"/release/{token}").text
    assert _choose(console, token, "allow") == 303
    assert _allowed(console, GATEWAY_KEY, **query) == (200, {"allowed": True})
    assert _allowed(console, GATEWAY_KEY, recipient="rita@example.com", sender="other@partner.example")[1] == {
        "allowed": False
    }
    console.stack.worker.drain()
    assert _state(console, tx) == "released" and _sim_states(console, tx) == {"delivered"}


def test_always_allow_is_ignored_for_a_held_back_copy(console: Console) -> None:
    tx, token = _reported(console, score=7.0)
    assert _choose(console, token, "allow") == 303  # posted by hand: no button for it
    assert _state(console, tx) == "approval_pending"
    query = {"recipient": "rita@example.com", "sender": "anna@partner.example"}
    assert _allowed(console, GATEWAY_KEY, **query) == (200, {"allowed": False})
    with console.stack.services.db.session() as session:
        assert session.scalars(select(Job).where(Job.kind == "release")).all() == []
