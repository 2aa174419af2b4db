"""The whole flow on real parts, Postfix and Rspamd included (SQLite and PostgreSQL): a spam
message sent to Postfix is rejected with a link in the 5xx, the service keeps the copy
Rspamd pushed, the sender reports it, the recipient is mailed, releases it, Postfix delivers
the original message to the final mailbox, and Rspamd learns it as ham.

The service runs over real HTTP on loopback (Rspamd pushes to it); the rule is pointed at it
with ``mta.configure`` and put back afterwards for the other tests of the session."""

from __future__ import annotations

import smtplib
import uuid
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from release.db.models import Recipient, StoredMessage
from release.gateway.stored import message_id_of
from tests.support.mta import LINK, SCORE_SPAM, SENDER, Mta, message, send
from tests.support.stack import Stack, drain_due
from tests.support.visitor import csrf_token, release_token_from, submit_report

pytestmark = pytest.mark.mta


def test_rejected_reported_released_delivered_and_learned(service: Stack, mta: Mta) -> None:
    subject = f"Quarterly figures {uuid.uuid4().hex[:8]}"  # Rspamd learns a message once per session
    raw = message(subject, spam=SCORE_SPAM)
    rcpts = ("bob@example.net", "carol@example.net")

    # 1. Postfix answers 5xx; its text carries a link the service verifies.
    code, reply = send(mta.smtp_port, raw, rcpts)
    assert code == 554, reply
    [link] = LINK.findall(reply)
    parts = urlsplit(link)
    path = f"{parts.path}?{parts.query}"
    client = service.new_client()
    assert client.get(path).status_code == 200  # the report form: the signature and node check out
    with service.services.db.session() as session:
        kept = session.scalars(select(StoredMessage)).one()
        assert kept.message_id == message_id_of(raw) and kept.envelope_sender == SENDER
        assert kept.queue_id not in ("", "unknown")  # Postfix's queue id, for its log

    # 2. The sender flow runs; 3. both recipients are notified.
    assert submit_report(client, service, path).status_code == 303
    drain_due(service.worker)
    mails = {m.rcpt_tos[0]: m.message for m in service.smtp.messages()}
    assert set(mails) == set(rcpts)
    token = release_token_from(mails["bob@example.net"])

    # 4. Bob releases: Postfix delivers the original message to his mailbox, headers intact.
    learned = mta.learned()
    page = client.get(f"/release/{token}")
    assert subject in page.text
    assert client.post(f"/release/{token}", data={"csrf_token": csrf_token(page.text)}).status_code == 303
    drain_due(service.worker)
    delivered = mta.delivered.wait(lambda m: f"Subject: {subject}\r\n".encode() in m.raw)
    assert (delivered.mail_from, delivered.rcpt_tos) == (SENDER, ("bob@example.net",))
    assert delivered.raw.endswith(raw)  # byte for byte after Postfix's own Received header
    added = delivered.raw[: -len(raw)]
    assert added.startswith(b"Received: ") and added.count(b"Received: ") == 1
    with service.services.db.session() as session:
        states = dict(session.execute(select(Recipient.address, Recipient.state)).all())
    assert states == {"bob@example.net": "released", "carol@example.net": "notified"}

    # 5. Rspamd learned it as ham.
    assert mta.learned() == learned + 1


def test_a_service_that_refuses_the_push_gets_a_deferred_message_not_a_lost_one(service: Stack, mta: Mta) -> None:
    """The node's password changed on one side only: Postfix answers 4xx, the sender's MTA
    retries, nothing is kept and nothing is lost."""
    mta.configure(push_password="not-the-service-password-0000")
    raw = message("Offer with a wrong password", spam=SCORE_SPAM)
    with smtplib.SMTP("127.0.0.1", mta.smtp_port, timeout=60) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail(SENDER, ["bob@example.net"], raw)
    assert 400 <= refused.value.smtp_code < 500
    with service.services.db.session() as session:
        assert session.scalars(select(StoredMessage)).all() == []


def test_a_subject_with_an_encoded_line_break_adds_no_recipient(service: Stack, mta: Mta) -> None:
    """The subject decodes to a line break and a forged X-Rspamd-rcpt header: the push still
    names only the envelope's recipients, so no stranger is mailed a release link. (Rspamd
    3.4 already decodes the line break to spaces; the rule also strips control characters
    from every value it sends, so this holds if either part changes.)"""
    forged = "=?utf-8?q?Invoice=0D=0AX-Rspamd-rcpt:_=5B=22victim=40example.org=22=5D?="
    raw = message(forged, spam=SCORE_SPAM)
    code, reply = send(mta.smtp_port, raw, ("bob@example.net",))
    assert code == 554 and LINK.search(reply), reply
    with service.services.db.session() as session:
        kept = session.scalars(select(StoredMessage)).one()
        assert [c.recipient for c in kept.copies] == ["bob@example.net"]
