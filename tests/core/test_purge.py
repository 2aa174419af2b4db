"""Retention enforcement against the simulator over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import func, select

from release.core import purge as enforcement
from release.db.models import AuditEntry, Event, Job, Recipient, Report, SenderNotice, utcnow
from tests.support.console import Console, seed_report


def _enforce(console: Console, dry_run: bool = False) -> enforcement.EnforcementResult:
    svc = console.stack.services
    with svc.db.session() as session:
        return enforcement.enforce(session, svc.gateways, svc.settings, utcnow(), dry_run=dry_run)


def test_copies_past_retention_are_deleted_younger_ones_untouched(console: Console) -> None:
    old = console.reported(["old1@example.com", "old2@example.com"])
    young = console.reported(["young@example.com"])
    gone = console.reported(["gone@example.com"])
    past = utcnow() - timedelta(minutes=1)
    for r in [*old.recipients, *gone.recipients]:
        console.age(r.id, expires_at=past)
    console.stack.sim.remove(gone.message_id)  # Halon's own cleanup got there first

    dry = _enforce(console, dry_run=True)
    assert len(dry.deleted) == 3 and not dry.already_gone
    assert {c.state for c in console.stack.sim.copies(old.message_id)} == {"hold"}
    assert console.recipient(old.recipients[0].id).state == "notified"

    result = _enforce(console)
    assert sorted(result.deleted) == [f"mx1/{old.message_id}#1", f"mx1/{old.message_id}#2"]
    assert result.already_gone == [f"mx1/{gone.message_id}#1"] and result.errors == []
    assert {c.state for c in console.stack.sim.copies(old.message_id)} == {"deleted"}
    assert {c.state for c in console.stack.sim.copies(young.message_id)} == {"hold"}
    assert console.recipient(old.recipients[0].id).state == "expired"
    assert console.recipient(gone.recipients[0].id).state == "expired"
    assert console.recipient(young.recipients[0].id).state == "notified"
    with console.stack.services.db.session() as session:
        audited = session.scalars(select(AuditEntry).where(AuditEntry.action == "copy.deleted")).all()
        assert len(audited) == 3 and {a.actor for a in audited} == {"system"}
    # A second run finds nothing to do.
    again = _enforce(console)
    assert again.deleted == [] and again.already_gone == []


def test_shortened_long_retention_applies_to_copies_located_before(console: Console) -> None:
    report = console.reported(["bea@example.com"])
    console.age(report.recipients[0].id, created=timedelta(days=4))  # expires_at still 7 days out
    client = console.login()
    data = {"short_hours": "24", "long_days": "3", "record_days": "90"}
    assert console.post(client, "/admin/settings", "/admin/settings", data).status_code == 303
    assert _enforce(console).deleted == [f"mx1/{report.message_id}#1"]


def test_gateway_outage_leaves_the_copy_for_the_next_run(console: Console) -> None:
    report = console.reported(["carl@example.com"])
    console.age(report.recipients[0].id, expires_at=utcnow() - timedelta(seconds=1))
    console.stack.sim.fail_next(1, status=503)
    result = _enforce(console)
    assert len(result.errors) == 1 and result.deleted == []
    assert console.recipient(report.recipients[0].id).state == "notified"
    assert _enforce(console).deleted == [f"mx1/{report.message_id}#1"]


def test_old_records_are_purged(console: Console) -> None:
    db = console.stack.services.db
    with db.session() as session:
        old = seed_report(session, created_at=utcnow() - timedelta(days=91), recipient_state="expired")
        kept_live = seed_report(session, created_at=utcnow() - timedelta(days=91), recipient_state="notified")
        recent = seed_report(session, created_at=utcnow() - timedelta(days=10), recipient_state="expired")
        session.flush()
        session.add(Event(actor="system", action="x", report_id=old.id, recipient_id=old.recipients[0].id))
        session.add(Job(kind="notify", ref_id=1, state="done", finished_at=utcnow() - timedelta(days=100)))
        session.add(Job(kind="notify", ref_id=2, state="dead", finished_at=utcnow() - timedelta(days=1)))
        session.commit()
        ids = (old.id, kept_live.id, recent.id)
    dry = _enforce(console, dry_run=True)
    assert (dry.reports_purged, dry.jobs_purged) == (1, 1)
    with db.session() as session:
        assert session.get(Report, ids[0]) is not None
    # kept_live's copy is "notified" but its expires_at is in the future: not deleted, not purged.
    result = _enforce(console)
    assert (result.reports_purged, result.jobs_purged) == (1, 1)
    with db.session() as session:
        assert session.get(Report, ids[0]) is None
        assert session.get(Report, ids[1]) is not None and session.get(Report, ids[2]) is not None
        assert session.scalar(select(func.count()).select_from(Event).where(Event.report_id == ids[0])) == 0
        assert session.scalar(select(func.count()).select_from(Recipient).where(Recipient.report_id == ids[0])) == 0
        assert session.scalar(select(func.count()).select_from(Job)) == 1
        assert session.scalar(select(AuditEntry).where(AuditEntry.action == "records.purged")) is not None


def test_periodic_job_reschedules_itself_and_stays_unique(console: Console) -> None:
    stack = console.stack
    report = console.reported(["dora@example.com"])
    console.age(report.recipients[0].id, expires_at=utcnow() - timedelta(seconds=1))
    with stack.services.db.session() as session:
        assert enforcement.schedule(session, utcnow())
        session.commit()
        assert not enforcement.schedule(session, utcnow())  # one queued run at most
        session.commit()
    # Run the due enforce job by hand: drain() would wait for the next one, due in 15 minutes.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and [j.state for j in console.jobs("enforce")] != ["done", "queued"]:
        stack.worker.run_available()
        time.sleep(0.02)
    enforce_jobs = console.jobs("enforce")
    assert [j.state for j in enforce_jobs] == ["done", "queued"]
    assert console.recipient(report.recipients[0].id).state == "expired"
    every = stack.services.settings.retention.enforce_every_minutes
    delay = enforce_jobs[1].run_after - utcnow()
    assert timedelta(minutes=every - 1) < delay <= timedelta(minutes=every)


def test_purge_command_dry_run_then_real(console: Console) -> None:
    report = console.reported(["eve@example.com"])
    console.age(report.recipients[0].id, expires_at=utcnow() - timedelta(seconds=1))
    runner = console.stack.app.test_cli_runner()
    dry = runner.invoke(args=["purge", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"would delete copy mx1/{report.message_id}#1" in dry.output
    assert console.recipient(report.recipients[0].id).state == "notified"
    real = runner.invoke(args=["purge"])
    assert real.exit_code == 0, real.output
    assert f"deleted copy mx1/{report.message_id}#1" in real.output
    assert {c.state for c in console.stack.sim.copies(report.message_id)} == {"deleted"}


def test_old_sender_notices_are_purged_but_never_a_queued_one(console: Console) -> None:
    db = console.stack.services.db
    old = utcnow() - timedelta(days=91)
    with db.session() as session:
        for i, state in enumerate(["sent", "skipped", "queued"]):
            session.add(SenderNotice(node="mx1", message_id=f"old-{i}", link_issued_at=old, signature="0" * 64,
                                     state=state, envelope_sender="s@partner.example", created_at=old))  # fmt: skip
        session.add(SenderNotice(node="mx1", message_id="recent", link_issued_at=utcnow(), signature="0" * 64,
                                 state="sent", envelope_sender="s@partner.example"))  # fmt: skip
        session.commit()
    assert _enforce(console, dry_run=True).notices_purged == 2
    assert _enforce(console).notices_purged == 2
    with db.session() as session:
        assert sorted(session.scalars(select(SenderNotice.message_id))) == ["old-2", "recent"]
