"""The admin console as a test drives it: the stack with an admin and a viewer account, signed-in
clients, reports made through the real flow, rows seeded directly."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from release.core import links
from release.db.models import Job, Recipient, Report, utcnow
from release.web.admin import auth
from tests.support.stack import Stack
from tests.support.visitor import csrf_token, report_path, submit_report

ADMIN = ("alice-admin", "correct horse battery staple")
VIEWER = ("victor-viewer", "viewer password 123456")


@dataclass
class Console:
    """The stack plus signed-in helpers."""

    stack: Stack

    def login(self, who: tuple[str, str] = ADMIN, client: FlaskClient | None = None) -> FlaskClient:
        client = client or self.stack.new_client()
        page = client.get("/admin/login")
        response = client.post(
            "/admin/login", data={"csrf_token": csrf_token(page.text), "username": who[0], "password": who[1]}
        )
        assert response.status_code == 303, response.text
        return client

    def post(self, client: FlaskClient, path: str, page: str, data: dict[str, str] | None = None) -> TestResponse:
        """POST with the CSRF token of an admin page the client loaded."""
        return client.post(path, data={"csrf_token": csrf_token(client.get(page).text), **(data or {})})

    def reported(self, recipients: list[str], subject: str = "Quarterly figures") -> Report:
        """A message reported through the real web flow and located + notified by the worker."""
        tx = self.stack.sim.add_message("anna@partner.example", recipients, subject)
        assert submit_report(self.stack.new_client(), self.stack, report_path(self.stack, tx)).status_code == 303
        self.stack.worker.drain()
        with self.stack.services.db.session() as session:
            report = session.scalar(select(Report).where(Report.message_id == tx))
            assert report is not None and report.state == "notified"
            _ = report.recipients
            return report

    def age(self, recipient_id: int, *, expires_at: datetime | None = None, created: timedelta | None = None) -> None:
        with self.stack.services.db.session() as session:
            row = session.get(Recipient, recipient_id)
            assert row is not None
            if expires_at is not None:
                row.expires_at = expires_at
            if created is not None:
                row.created_at = utcnow() - created
            session.commit()

    def recipient(self, recipient_id: int) -> Recipient:
        with self.stack.services.db.session() as session:
            row = session.get(Recipient, recipient_id)
            assert row is not None
            return row

    def jobs(self, kind: str) -> list[Job]:
        with self.stack.services.db.session() as session:
            return list(session.scalars(select(Job).where(Job.kind == kind).order_by(Job.id)))


def open_console(stack: Stack) -> Console:
    """An admin and a viewer account in the stack's database."""
    with stack.services.db.session() as session:
        auth.create_admin(session, ADMIN[0], ADMIN[1], "admin", actor="test")
        auth.create_admin(session, VIEWER[0], VIEWER[1], "viewer", actor="test")
        session.commit()
    return Console(stack)


def seed_report(session: object, **fields: object) -> Report:
    """A report row with one copy, written directly (for searching and purging)."""
    values: dict[str, object] = {
        "node": "mx1",
        "message_id": secrets.token_hex(8),
        "link_issued_at": utcnow(),
        "state": "notified",
        "comment": "hello",
        "sender_ip": "192.0.2.1",
        "envelope_sender": "someone@partner.example",
        "subject": "Hello",
    }
    address = fields.pop("address", "rcpt@example.com")
    rstate = fields.pop("recipient_state", "notified")
    values.update(fields)
    report = Report(**values)
    nonce = links.new_token_nonce()
    report.recipients.append(
        Recipient(
            queue=1,
            address=address,
            state=rstate,
            token_nonce=nonce,
            token_hash=links.token_hash(nonce + secrets.token_hex(4)),
            expires_at=utcnow() + timedelta(days=7),
        )
    )
    session.add(report)  # type: ignore[attr-defined]
    return report
