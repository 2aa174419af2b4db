"""Release policy and recipient choices at the flow level: real SQLite and PostgreSQL, a fake
gateway and a recording mailer, jobs run by hand the way the worker runs them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from release.config import PolicySettings
from release.container import Steps, build_steps, job_types
from release.core import admin_actions, links
from release.core.choices import Choices, is_allowed, needs_approval, pending_count
from release.core.context import Context
from release.core.reports import Submission
from release.db import migrate
from release.db.engine import Database
from release.db.models import AllowedSender, AuditEntry, Job, Recipient
from release.devtools.mailcapture import text_and_html
from release.jobs import queue as jobs
from release.jobs.registry import JobRegistry
from release.mail.templates import MailTemplates
from tests.support.config import make_settings
from tests.support.fakes import COMMENT, LONG, NODE, SHORT, Clock, FakeGateway
from tests.support.mailer import RecordingMailer

HIGH_RISK = "mailquarantine:5"
MSGID = "7b0c1a2e-0000-4000-8000-0000000000aa"


@dataclass
class Env:
    db: Database
    ctx: Context
    steps: Steps
    job_types: JobRegistry
    choices: Choices
    gateway: FakeGateway
    mailer: RecordingMailer


@pytest.fixture
def env(database_url: str) -> Iterator[Env]:
    db = Database(database_url)
    migrate.upgrade(db)
    policy = PolicySettings(max_spam_score=5.0, high_risk_quarantines=(HIGH_RISK,))
    settings = dataclasses.replace(make_settings(database_url), policy=policy)
    gateway, mailer = FakeGateway(), RecordingMailer()
    ctx = Context(settings, {NODE: gateway}, mailer, MailTemplates(settings.i18n), clock=Clock())
    steps = build_steps(ctx)
    yield Env(db, ctx, steps, job_types(steps), steps.choices, gateway, mailer)
    db.dispose()


def settle(env: Env) -> list[str]:
    """Run every queued job in order, as the worker would; returns the kinds run."""
    ran: list[str] = []
    while True:
        with env.db.session() as session:
            job = session.scalar(select(Job).where(Job.state == "queued").order_by(Job.id).limit(1))
            if job is None:
                return ran
            job_id, kind, ref_id = job.id, job.kind, job.ref_id
        with env.db.session() as session:
            env.job_types[kind].run(session, ref_id)
            jobs.finish(session, job_id)
            session.commit()
        ran.append(kind)


def notified(env: Env, score: float | None, quarantine: str = SHORT) -> int:
    """One copy held, reported, located and mailed; returns the recipient id."""
    env.gateway.hold(MSGID, 1, "Rita@Example.org", quarantine=quarantine)
    env.gateway.copies[(MSGID, 1)] = dataclasses.replace(env.gateway.copies[(MSGID, 1)], spam_score=score)
    link = links.ReportLink(NODE, MSGID, int(env.ctx.clock().timestamp()))
    with env.db.session() as session:
        env.steps.reports.submit(session, Submission(link, COMMENT, "198.51.100.7"))
    settle(env)
    with env.db.session() as session:
        (recipient,) = session.scalars(select(Recipient))
        assert recipient.state == "notified"
        return recipient.id


def act(env: Env, recipient_id: int, step: str, **kwargs: bool) -> str:
    with env.db.session() as session:
        recipient = session.get(Recipient, recipient_id)
        assert recipient is not None
        return str(getattr(env.choices, step)(session, recipient, **kwargs).state)


def row(env: Env, recipient_id: int) -> Recipient:
    with env.db.session() as session:
        found = session.get(Recipient, recipient_id)
        assert found is not None
        session.expunge(found)
        return found


def queued_kinds(env: Env) -> list[str]:
    with env.db.session() as session:
        return list(session.scalars(select(Job.kind).where(Job.state == "queued").order_by(Job.id)))


def test_a_score_above_the_limit_asks_the_admins_instead_of_releasing(env: Env) -> None:
    rid = notified(env, score=7.5)
    assert needs_approval(env.ctx.settings.policy, row(env, rid)) == "spam score 7.5 is above 5"
    assert act(env, rid, "release") == "approval_pending"
    assert act(env, rid, "release") == "approval_pending"  # a repeat changes nothing
    assert queued_kinds(env) == []
    assert env.gateway.count("release") == 0
    with env.db.session() as session:
        assert pending_count(session) == 1


def test_a_score_at_the_limit_or_without_a_limit_releases_directly(env: Env) -> None:
    rid = notified(env, score=5.0)
    assert act(env, rid, "release") == "release_requested"
    settle(env)
    assert row(env, rid).state == "released" and env.gateway.delivered == [(MSGID, 1)]
    assert needs_approval(PolicySettings(), row(env, rid)) is None


def test_a_copy_found_in_a_high_risk_quarantine_is_extended_and_held_back(env: Env) -> None:
    rid = notified(env, score=None, quarantine=HIGH_RISK)
    assert env.gateway.quarantine_of(MSGID, 1) == LONG  # retention extended like any copy
    assert row(env, rid).held_in == HIGH_RISK
    assert act(env, rid, "release") == "approval_pending"


def test_approve_releases_and_mails_the_outcome_with_an_audit_entry(env: Env) -> None:
    rid = notified(env, score=9.0)
    act(env, rid, "release")
    env.mailer.clear()
    with env.db.session() as session:
        admin_actions.decide_release(session, rid, "alice", approve=True, reason="known partner")
    with env.db.session() as session:
        (audit,) = session.scalars(select(AuditEntry).where(AuditEntry.action == "copy.release_approved"))
        assert audit.actor == "alice" and "known partner" in audit.detail
    assert sorted(settle(env)) == ["outcome_mail", "release"]
    assert row(env, rid).state == "released" and env.gateway.delivered == [(MSGID, 1)]
    (mail,) = env.mailer.to("Rita@Example.org")
    text, html = text_and_html(mail)
    assert "approved" in text and "known partner" in html and COMMENT not in mail.as_string()
    with env.db.session() as session, pytest.raises(admin_actions.ActionRefused):
        admin_actions.decide_release(session, rid, "alice", approve=False, reason="again")


def test_deny_is_final_mails_the_recipient_and_never_releases(env: Env) -> None:
    rid = notified(env, score=9.0)
    act(env, rid, "release")
    env.mailer.clear()
    with env.db.session() as session:
        admin_actions.decide_release(session, rid, "alice", approve=False, reason="phishing <b>kit</b>")
    assert settle(env) == ["outcome_mail"]
    assert row(env, rid).state == "release_denied"
    assert env.gateway.count("release") == 0 and env.gateway.quarantine_of(MSGID, 1) == LONG
    (mail,) = env.mailer.to("Rita@Example.org")
    assert "refused" in str(mail["Subject"])
    assert "phishing &lt;b&gt;kit&lt;/b&gt;" in text_and_html(mail)[1]
    assert act(env, rid, "release") == "release_denied"
    assert act(env, rid, "delete") == "release_denied"


def test_delete_takes_the_copy_away_and_the_worker_deletes_it_once(env: Env) -> None:
    rid = notified(env, score=1.0)
    assert act(env, rid, "delete") == "deleted"
    assert act(env, rid, "release") == "deleted"
    assert settle(env) == ["discard"]
    assert (MSGID, 1) not in env.gateway.copies and env.gateway.count("delete") == 1
    with env.db.session() as session:  # a replay after a crash: gone already is done
        env.choices.discard(session, rid)
    assert row(env, rid).state == "deleted"


def test_always_allow_stores_one_lower_case_entry_then_releases(env: Env) -> None:
    rid = notified(env, score=1.0)
    assert act(env, rid, "release", always_allow=True) == "release_requested"
    assert act(env, rid, "release", always_allow=True) == "release_requested"
    with env.db.session() as session:
        entries = [(a.recipient, a.sender) for a in session.scalars(select(AllowedSender))]
        assert entries == [("rita@example.org", "offers@spammy.example")]
        assert is_allowed(session, "RITA@example.org", "Offers@Spammy.example")
        assert not is_allowed(session, "rita@example.org", "other@spammy.example")
    assert settle(env) == ["release"]


def test_always_allow_is_not_recorded_for_a_held_back_copy(env: Env) -> None:
    rid = notified(env, score=8.0)
    assert act(env, rid, "release", always_allow=True) == "approval_pending"
    with env.db.session() as session:
        assert session.scalars(select(AllowedSender)).all() == []
