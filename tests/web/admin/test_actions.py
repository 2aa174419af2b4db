"""Admin actions on copies and jobs, end to end through the worker and the simulator."""

from __future__ import annotations

from sqlalchemy import select

from release.db.models import AuditEntry, Event, Job, Report
from tests.support.console import Console
from tests.support.visitor import release_token_from, report_path, submit_report


def _act(console: Console, client, report: Report, recipient_id: int, action: str, confirm: bool = True):  # type: ignore[no-untyped-def]
    data = {"confirm": "y"} if confirm else {}
    return console.post(client, f"/admin/recipients/{recipient_id}/{action}", f"/admin/reports/{report.id}", data)


def _audit(console: Console, action: str) -> list[AuditEntry]:
    with console.stack.services.db.session() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def test_release_needs_confirmation_then_releases_through_the_worker(console: Console) -> None:
    report = console.reported(["ann@example.com", "ben@example.com"])
    ann = report.recipients[0]
    client = console.login()
    unconfirmed = _act(console, client, report, ann.id, "release", confirm=False)
    assert unconfirmed.status_code == 303
    assert "Tick the confirmation box" in client.get(unconfirmed.headers["Location"]).text
    assert console.recipient(ann.id).state == "notified"

    done = _act(console, client, report, ann.id, "release")
    assert done.status_code == 303
    assert console.recipient(ann.id).state == "release_requested"
    console.stack.worker.drain()
    assert console.recipient(ann.id).state == "released"
    states = {c.recipient: c.state for c in console.stack.sim.copies(report.message_id)}
    assert states == {"ann@example.com": "delivered", "ben@example.com": "hold"}
    assert [a.actor for a in _audit(console, "copy.release_requested")] == ["alice-admin"]
    page = client.get(f"/admin/reports/{report.id}").text
    assert "admin:alice-admin" in page and "release requested" in page

    # Released: no second release.
    again = _act(console, client, report, ann.id, "release")
    assert "cannot be released" in client.get(again.headers["Location"]).text


def test_admin_may_release_a_copy_whose_notification_failed(console: Console) -> None:
    report = console.reported(["cleo@example.com"])
    rid = report.recipients[0].id
    with console.stack.services.db.session() as session:
        row = session.get(type(report.recipients[0]), rid)
        assert row is not None
        row.state = "failed"
        session.commit()
    client = console.login()
    assert _act(console, client, report, rid, "release").status_code == 303
    console.stack.worker.drain()
    assert console.recipient(rid).state == "released"


def test_resend_mails_the_link_again(console: Console) -> None:
    report = console.reported(["dan@example.com"])
    rid = report.recipients[0].id
    assert len(console.stack.smtp.messages()) == 1
    client = console.login()
    assert _act(console, client, report, rid, "resend").status_code == 303
    assert console.recipient(rid).state == "notify_pending"
    console.stack.worker.drain()
    mails = console.stack.smtp.messages()
    assert len(mails) == 2 and list(mails[1].rcpt_tos) == ["dan@example.com"]
    assert release_token_from(mails[0].message) == release_token_from(mails[1].message)
    # A deliberate resend must not look like a duplicate to the receiving server.
    assert mails[0].message["Message-ID"] != mails[1].message["Message-ID"]
    assert console.recipient(rid).state == "notified"
    assert len(_audit(console, "copy.resend_requested")) == 1


def test_delete_takes_the_copy_out_of_reach_and_deletes_it_on_the_gateway(console: Console) -> None:
    report = console.reported(["fay@example.com"])
    rid = report.recipients[0].id
    token = release_token_from(console.stack.smtp.messages()[0].message)
    client = console.login()
    assert _act(console, client, report, rid, "delete").status_code == 303
    assert console.recipient(rid).state == "expired"  # the recipient can no longer release it
    assert "Expired" in console.stack.new_client().get(f"/release/{token}").text
    assert {c.state for c in console.stack.sim.copies(report.message_id)} == {"hold"}  # not from the request
    console.stack.worker.drain()
    assert {c.state for c in console.stack.sim.copies(report.message_id)} == {"deleted"}
    assert [a.actor for a in _audit(console, "copy.delete_requested")] == ["alice-admin"]
    assert [a.actor for a in _audit(console, "copy.deleted")] == ["system"]


def test_retry_of_a_dead_job_starts_over(console: Console) -> None:
    stack = console.stack
    tx = stack.sim.add_message("anna@partner.example", ["gil@example.com"], "Retry me")
    stack.sim.fail_next(stack.services.settings.worker.max_attempts, status=503)  # every attempt fails
    assert submit_report(stack.new_client(), stack, report_path(stack, tx)).status_code == 303
    stack.worker.drain()
    with stack.services.db.session() as session:
        report = session.scalar(select(Report).where(Report.message_id == tx))
        assert report is not None and report.state == "failed"
        job = session.scalar(select(Job).where(Job.kind == "locate", Job.ref_id == report.id))
        assert job is not None and job.state == "dead"
    client = console.login()
    page = client.get(f"/admin/reports/{report.id}").text
    assert "gave up" in page or "dead" in page
    response = console.post(client, f"/admin/jobs/{job.id}/retry", f"/admin/reports/{report.id}", {"confirm": "y"})
    assert response.status_code == 303
    stack.worker.drain()
    with stack.services.db.session() as session:
        refreshed = session.get(Report, report.id)
        assert refreshed is not None and refreshed.state == "notified"
        assert session.scalar(select(Event).where(Event.action == "retry_requested")) is not None
    assert len(_audit(console, "job.retried")) == 1
    # Not dead any more: a second retry is refused.
    again = console.post(client, f"/admin/jobs/{job.id}/retry", f"/admin/reports/{report.id}", {"confirm": "y"})
    assert again.status_code == 303
