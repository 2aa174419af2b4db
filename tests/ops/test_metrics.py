"""/metrics: access control, database counts at scrape time, gateway and SMTP instrumentation."""

from __future__ import annotations

import secrets
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from release.config import ConfigError, settings_from_mapping
from release.db.models import Job, utcnow
from release.gateway import GatewayError
from release.mail.sending import SendStatus
from tests.support.config import make_config
from tests.support.stack import Stack, StackFactory, drain_due
from tests.support.visitor import report_path, submit_report

TOKEN = secrets.token_urlsafe(24)


def scrape(stack: Stack, token: str = TOKEN) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = stack.client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_off_when_not_configured(stack: Stack) -> None:
    assert stack.client.get("/metrics").status_code == 404


def test_bearer_token_is_required(make_stack: StackFactory) -> None:
    stack = make_stack(metrics={"token": TOKEN})
    assert stack.client.get("/metrics").status_code == 401
    wrong_token = TOKEN[:-1] + ("y" if TOKEN.endswith("x") else "x")  # a random TOKEN ends in "x" 1 time in 64
    wrong = stack.client.get("/metrics", headers={"Authorization": "Bearer " + wrong_token})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
    basic = stack.client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status_code == 401
    assert ("release_database_up", ()) in scrape(stack)


def test_allowed_addresses(make_stack: StackFactory) -> None:
    allowed = make_stack(metrics={"allowed_ips": ["127.0.0.0/8"]})
    assert allowed.client.get("/metrics").status_code == 200
    elsewhere = make_stack(metrics={"allowed_ips": ["10.0.0.0/8", "192.0.2.7"]})
    assert elsewhere.client.get("/metrics").status_code == 403
    both = make_stack(metrics={"allowed_ips": ["127.0.0.1"], "token": TOKEN})
    assert both.client.get("/metrics").status_code == 401
    assert both.client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


@pytest.mark.parametrize("token", ["demo", "change-me", "short-token"])
def test_placeholder_token_refused_in_production(token: str, tmp_path: Any, simulator: Any) -> None:
    config = make_config(f"sqlite:///{tmp_path / 'x.sqlite3'}", simulator, 25, metrics={"token": token})
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(config)
    assert caught.value.key == "metrics.token"


def test_bad_address_refused(tmp_path: Any, simulator: Any) -> None:
    config = make_config(f"sqlite:///{tmp_path / 'x.sqlite3'}", simulator, 25, metrics={"allowed_ips": ["nope"]})
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(config)
    assert caught.value.key == "metrics.allowed_ips[0]"


def test_counts_and_timings_after_a_report(make_stack: StackFactory) -> None:
    stack = make_stack(metrics={"token": TOKEN})
    finds, sends = (
        sample("release_gateway_request_seconds_count", node="mx1", operation="find"),
        sample("release_smtp_send_seconds_count"),
    )
    tx = stack.sim.add_message("anna@partner.example", ["bob@example.test", "carol@example.test"], "Figures")
    assert submit_report(stack.new_client(), stack, report_path(stack, tx)).status_code == 303
    before = scrape(stack)
    assert before[("release_reports", (("state", "pending"),))] == 1
    assert before[("release_jobs", (("kind", "locate"), ("state", "queued")))] == 1
    drain_due(stack.worker)
    after = scrape(stack)
    assert after[("release_database_up", ())] == 1
    assert after[("release_reports", (("state", "notified"),))] == 1
    assert ("release_reports", (("state", "pending"),)) not in after
    assert after[("release_recipients", (("state", "notified"),))] == 2
    assert after[("release_jobs", (("kind", "locate"), ("state", "done")))] == 1
    assert after[("release_jobs_oldest_due_seconds", ())] == 0
    # Same process here, so the worker's calls show in this scrape.
    assert after[("release_gateway_request_seconds_count", (("node", "mx1"), ("operation", "find")))] > finds
    assert after[("release_smtp_send_seconds_count", ())] >= sends + 1  # both mails in one batch


def test_oldest_due_job_age(make_stack: StackFactory) -> None:
    stack = make_stack(metrics={"token": TOKEN})
    with stack.services.db.session() as session:
        session.add(Job(kind="notify", ref_id=1, run_after=utcnow() - timedelta(seconds=90)))
        session.add(Job(kind="notify", ref_id=2, run_after=utcnow() + timedelta(hours=1)))  # not due yet
        session.commit()
    assert 90 <= scrape(stack)[("release_jobs_oldest_due_seconds", ())] < 150


def test_gateway_errors_are_counted_per_kind(stack: Stack) -> None:
    gateway = stack.services.gateways["mx1"]
    unavailable = sample("release_gateway_errors_total", node="mx1", operation="find", kind="unavailable")
    rejected = sample("release_gateway_errors_total", node="mx1", operation="find", kind="rejected")
    stack.sim.fail_next(1, status=503)
    with pytest.raises(GatewayError):
        gateway.find("tx-none")
    assert sample("release_gateway_errors_total", node="mx1", operation="find", kind="unavailable") == unavailable + 1
    stack.sim.users["release"] = "another-password-000"
    with pytest.raises(GatewayError):
        gateway.find("tx-none")
    assert sample("release_gateway_errors_total", node="mx1", operation="find", kind="rejected") == rejected + 1


def test_smtp_errors_are_counted(stack: Stack) -> None:
    temporary = sample("release_smtp_errors_total", status="temporary")
    stack.smtp.stop()
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.test", "b@example.test", "x"
    (result,) = stack.services.mailer.send([message])
    assert result.status is SendStatus.TEMPORARY
    assert sample("release_smtp_errors_total", status="temporary") == temporary + 1


def test_database_outage_is_reported_not_a_500(make_stack: StackFactory) -> None:
    stack = make_stack(metrics={"token": TOKEN})
    stack.services.db.engine.dispose()
    db = stack.services.db
    if db.is_sqlite:
        db.engine = create_engine("sqlite:////nonexistent-directory/x.sqlite3")
    else:
        db.engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    db.sessions.configure(bind=db.engine)
    assert scrape(stack)[("release_database_up", ())] == 0
