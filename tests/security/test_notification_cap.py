"""Notifications per recipient per day: over the cap the report is accepted and the
notification waits (job re-queued for when the 24 h window frees up, no attempt used)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from release.db.models import Job, Recipient, Report, utcnow
from tests.support.mailer import RecordingMailer
from tests.support.stack import Stack, StackFactory, drain_due
from tests.support.visitor import report_path, submit_report

CAP = 2


def notify_jobs(stack: Stack) -> dict[int, Job]:
    with stack.services.db.session() as session:
        return {j.ref_id: j for j in session.scalars(select(Job).where(Job.kind == "notify"))}


def test_cap_plus_one_reports_to_one_recipient(make_stack: StackFactory) -> None:
    stack = make_stack(limits={"notifications_per_recipient_per_day": CAP})
    # Case variants are one mailbox; the victim is addressed CAP + 1 times.
    addresses = ["victim@example.com", "Victim@Example.com", "VICTIM@example.com"]
    txs = [stack.sim.add_message("spam@bulk.example", [a], f"Offer {i}") for i, a in enumerate(addresses)]
    bystander = stack.sim.add_message("a@partner.example", ["other@example.com"], "Unrelated")
    for tx in [*txs, bystander]:
        assert submit_report(stack.new_client(), stack, report_path(stack, tx)).status_code == 303
    drain_due(stack.worker)  # locate and notify jobs run concurrently (worker concurrency 8)

    sent = [m for m in stack.smtp.messages() if m.rcpt_tos[0].lower() == "victim@example.com"]
    assert len(sent) == CAP
    assert [m.rcpt_tos for m in stack.smtp.messages() if m.rcpt_tos[0] == "other@example.com"]  # not held up
    with stack.services.db.session() as session:
        victims = session.scalars(select(Recipient).where(Recipient.address != "other@example.com")).all()
        assert len(session.scalars(select(Report)).all()) == 4  # every report was accepted
        waiting = [r for r in victims if r.state == "notify_pending"]
        assert len(waiting) == 1 and sorted(r.state for r in victims) == ["notified", "notified", "notify_pending"]
        assert waiting[0].notified_at is None
        assert session.get(Report, waiting[0].report_id).state == "locating"  # status: still in progress
        notified_at = sorted(r.notified_at for r in victims if r.notified_at)
    job = notify_jobs(stack)[waiting[0].id]
    assert job.state == "queued" and job.attempts == 0
    assert job.last_error and job.last_error.startswith("deferred:")
    # It waits until the older of the two counted notifications is 24 h old.
    assert abs(job.run_after - (notified_at[0] + timedelta(hours=24))) < timedelta(seconds=1)
    print(f"cap {CAP}: {len(sent)} mails sent, 1 waits until {job.run_after:%H:%M:%S} UTC (attempts {job.attempts})")

    # Waiting again and again never uses up max_attempts (5 in these tests).
    for _ in range(stack.services.settings.worker.max_attempts + 2):
        with stack.services.db.session() as session:
            session.execute(update(Job).where(Job.id == job.id).values(run_after=utcnow()))
            session.commit()
        drain_due(stack.worker)
    job = notify_jobs(stack)[waiting[0].id]
    assert job.state == "queued" and job.attempts == 0
    assert len([m for m in stack.smtp.messages() if m.rcpt_tos[0].lower() == "victim@example.com"]) == CAP

    # A day later the window has room again: the waiting notification goes out.
    with stack.services.db.session() as session:
        session.execute(
            update(Recipient)
            .where(Recipient.notified_at.is_not(None))
            .values(notified_at=utcnow() - timedelta(hours=24, minutes=1))
        )
        session.execute(update(Job).where(Job.id == job.id).values(run_after=utcnow()))
        session.commit()
    drain_due(stack.worker)
    assert len([m for m in stack.smtp.messages() if m.rcpt_tos[0].lower() == "victim@example.com"]) == CAP + 1
    with stack.services.db.session() as session:
        recipient = session.get(Recipient, waiting[0].id)
        assert recipient is not None and recipient.state == "notified"
        assert session.get(Report, recipient.report_id).state == "notified"
    job = notify_jobs(stack)[waiting[0].id]
    assert job.state == "done" and job.attempts == 1


def test_a_temporary_smtp_failure_keeps_its_place(make_stack: StackFactory) -> None:
    """A notification that failed temporarily is retried and sent although the cap is full:
    it took its place when it first tried, and is counted once."""
    stack = make_stack(limits={"notifications_per_recipient_per_day": 1})
    mailer = RecordingMailer()
    mailer.fail_next(2)  # SMTP trouble for the first two attempts
    stack.services.ctx.mailer = mailer
    first = stack.sim.add_message("a@partner.example", ["solo@example.com"], "Hi")
    assert submit_report(stack.new_client(), stack, report_path(stack, first)).status_code == 303
    drain_due(stack.worker)
    assert [str(m["To"]) for m in mailer.sent] == ["solo@example.com"]
    (job,) = notify_jobs(stack).values()
    assert job.state == "done" and job.attempts == 3  # two failures, then sent
    # The cap (1) is now used by that one notification: a second report waits.
    second = stack.sim.add_message("a@partner.example", ["solo@example.com"], "Again")
    assert submit_report(stack.new_client(), stack, report_path(stack, second)).status_code == 303
    drain_due(stack.worker)
    assert len(mailer.sent) == 1
    waiting = [j for j in notify_jobs(stack).values() if j.state == "queued"]
    assert len(waiting) == 1 and waiting[0].run_after > utcnow() + timedelta(hours=23)


def test_a_permanently_refused_notification_frees_its_place(make_stack: StackFactory) -> None:
    stack = make_stack(limits={"notifications_per_recipient_per_day": 1})
    mailer = RecordingMailer()
    mailer.fail_next(1, permanent=True)
    stack.services.ctx.mailer = mailer
    for subject in ("One", "Two"):
        tx = stack.sim.add_message("a@partner.example", ["solo@example.com"], subject)
        assert submit_report(stack.new_client(), stack, report_path(stack, tx)).status_code == 303
        drain_due(stack.worker)
    with stack.services.db.session() as session:
        states = sorted(r.state for r in session.scalars(select(Recipient)))
    assert states == ["failed", "notified"] and len(mailer.sent) == 1
