"""Hostile review of the rspamd node on the real Postfix + Rspamd built from docs/rspamd/, with
the service over real HTTP (SQLite and PostgreSQL): what a sender can put in an SMTP
transaction that Postfix accepts, and what becomes of it."""

from __future__ import annotations

import smtplib
import threading
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from release.db.models import StoredCopy, StoredMessage
from release.devtools.mailcapture import CaptureServer
from release.devtools.simulator import HalonSimulator, SimulatorServer
from tests.support.mta import LINK, SCORE_SPAM, SENDER, Mta, PushReceiver, message
from tests.support.rspamd import NODE, PUSH_PASSWORD, build_rspamd_stack
from tests.support.stack import Stack, close_stack

pytestmark = pytest.mark.mta


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    """Unused by an rspamd node (the stack builder takes one)."""
    with SimulatorServer(HalonSimulator({"release": "sim-password-0123"})) as server:
        yield server


@pytest.fixture
def service(
    database_url: str, simulator: SimulatorServer, smtp_server: CaptureServer, mta: Mta, push: PushReceiver
) -> Iterator[Stack]:
    """The service with the MTA's rspamd node over real HTTP; the rule pushes to it."""
    stack = build_rspamd_stack(database_url, simulator, smtp_server, mta.relay_port)
    server = make_server("127.0.0.1", 0, stack.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    before = {k: getattr(mta.settings, k) for k in ("public_url", "link_key", "push_password", "push_url", "node")}
    settings = stack.services.settings
    mta.configure(
        public_url=settings.app.public_url,
        link_key=settings.links.keys[0],
        push_password=PUSH_PASSWORD,
        push_url=f"http://127.0.0.1:{server.server_port}/gateway/v1/rspamd/{NODE}",
        node=NODE,
    )
    try:
        yield stack
    finally:
        mta.configure(**before)
        server.shutdown()
        server.server_close()
        close_stack(stack)


def transaction(port: int, raw: bytes, rcpts: list[str], *, utf8: bool = False) -> tuple[int, str]:
    """One SMTP transaction to Postfix; the reply that ended it (250 and "" when accepted)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("client.example.org")
        try:
            client.sendmail(SENDER, rcpts, raw, mail_options=["SMTPUTF8"] if utf8 else [])
        except smtplib.SMTPResponseException as exc:
            return exc.smtp_code, exc.smtp_error.decode()
    return 250, ""


def kept_recipients(stack: Stack) -> list[str]:
    with stack.services.db.session() as session:
        return sorted(session.scalars(select(StoredCopy.recipient)))


def test_a_spam_message_to_100_recipients_is_deferred_instead_of_rejected_with_a_link(service: Stack, mta: Mta) -> None:
    """The rule bounds every push header to 2000 bytes (header_value), X-Rspamd-rcpt included:
    past ~85 recipients the JSON list is cut mid-string, the service answers 400, and the
    message is deferred (4xx) on every retry until the sender's MTA gives up, with no link.
    Postfix accepts 1000 recipients (smtpd_recipient_limit) and so does the service."""
    rcpts = [f"user{i:03d}@example.net" for i in range(100)]
    code, reply = transaction(mta.smtp_port, message(f"Offer {uuid.uuid4().hex[:8]}", spam=SCORE_SPAM), rcpts)
    assert code == 554 and LINK.search(reply), (code, reply)
    assert kept_recipients(service) == rcpts


@pytest.mark.parametrize(
    ("rcpt", "utf8"),
    [("j\u00f6rg@example.net", True), ('"john doe"@example.net', False)],
    ids=["smtputf8-local-part", "quoted-local-part"],
)
def test_a_spam_message_to_a_valid_address_postfix_accepts_is_deferred_for_ever(
    service: Stack, mta: Mta, rcpt: str, utf8: bool
) -> None:
    """Rspamd's exporter list is empty for an SMTPUTF8 recipient and holds the quoted local
    part unquoted ("john doe@example.net"); the service refuses both pushes (400), so these
    recipients' false positives are deferred again and again, never rejected with a link."""
    raw = message(f"Offer {uuid.uuid4().hex[:8]}", spam=SCORE_SPAM)
    code, reply = transaction(mta.smtp_port, raw, [rcpt], utf8=utf8)
    assert code == 554 and LINK.search(reply), (code, reply)
    assert len(kept_recipients(service)) == 1


def test_a_quoted_local_part_is_released_to_the_address_inside_the_quotes(service: Stack, mta: Mta) -> None:
    """RCPT TO:<"bob@evil.example,x"@example.net> is one local mailbox to Postfix. Rspamd
    pushes it unquoted, the service keeps it as "bob@evil.example,x@example.net", and the
    release re-injects RCPT TO:<bob@evil.example> (aiosmtplib's parseaddr): the re-injection
    listener relays for the service (permit_mynetworks), so the copy leaves for a domain
    outside the organisation."""
    subject = f"Offer {uuid.uuid4().hex[:8]}"
    code, reply = transaction(mta.smtp_port, message(subject, spam=SCORE_SPAM), ['"bob@evil.example,x"@example.net'])
    assert code == 554, reply
    with service.services.db.session() as session:
        stored = session.scalars(select(StoredMessage)).one()
        m, [copy] = stored.message_id, [(c.id, c.recipient) for c in stored.copies]
    gateway = service.services.gateways[NODE]
    assert gateway.release(m, copy[0]) == 1
    delivered = mta.delivered.wait(lambda d: f"Subject: {subject}\r\n".encode() in d.raw)
    assert "evil.example" not in " ".join(delivered.rcpt_tos), (copy[1], delivered.rcpt_tos)


def test_a_nul_in_an_encoded_subject_defers_the_message_for_ever_on_postgresql(service: Stack, mta: Mta) -> None:
    """A Subject of ``=?utf-8?q?...=00...?=`` (plain ASCII on the wire, any sender can send it)
    decodes to a NUL that PostgreSQL refuses: the push is a 500 and the message is deferred
    on every retry, never rejected with a link."""
    raw = message(f"=?utf-8?q?Invoice=00_{uuid.uuid4().hex[:8]}?=", spam=SCORE_SPAM)
    code, reply = transaction(mta.smtp_port, raw, ["bob@example.net"])
    assert code == 554 and LINK.search(reply), (code, reply)
    assert kept_recipients(service) == ["bob@example.net"]


def test_an_smtputf8_envelope_sender_is_released_as_the_null_sender(service: Stack, mta: Mta) -> None:
    """Rspamd's exporter names a UTF-8 MAIL FROM "unknown", which parse_push reads as the null
    sender: the push is taken (554 with a link), and the release re-injects the message with
    MAIL FROM:<>, so the recipient gets what looks like a bounce and any reply or bounce of it
    is lost (and the sender notice has nobody to go to)."""
    subject = f"Offer {uuid.uuid4().hex[:8]}"
    sender = "j\u00f6rg@partner.example"
    with smtplib.SMTP("127.0.0.1", mta.smtp_port, timeout=60) as client:
        client.ehlo("client.example.org")
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail(sender, ["bob@example.net"], message(subject, spam=SCORE_SPAM), mail_options=["SMTPUTF8"])
    assert refused.value.smtp_code == 554, refused.value
    with service.services.db.session() as session:
        stored = session.scalars(select(StoredMessage)).one()
        m, queue = stored.message_id, stored.copies[0].id
    assert service.services.gateways[NODE].release(m, queue) == 1
    delivered = mta.delivered.wait(lambda d: f"Subject: {subject}\r\n".encode() in d.raw)
    assert delivered.mail_from == sender
