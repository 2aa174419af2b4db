"""Hostile review of the rspamd node on the real Postfix + Rspamd built from docs/rspamd/, with
the service over real HTTP (SQLite and PostgreSQL): what a sender can put in an SMTP
transaction that Postfix accepts, and what becomes of it."""

from __future__ import annotations

import smtplib
import uuid

import pytest
from sqlalchemy import select

from release.db.models import StoredCopy
from tests.support.mta import LINK, SCORE_SPAM, SENDER, Mta, message, send
from tests.support.stack import Stack

pytestmark = pytest.mark.mta


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


def test_a_spam_message_to_100_recipients_is_rejected_with_a_link_and_kept_for_all(service: Stack, mta: Mta) -> None:
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
    [("j\u00f6rg@example.net", True), ('"john doe"@example.net', False), ('"bob@evil.example,x"@example.net', False)],
    ids=["smtputf8-local-part", "quoted-local-part", "quoted-address-inside"],
)
def test_an_address_rspamd_cannot_give_exactly_gets_a_plain_reject_not_a_deferral_for_ever(
    service: Stack, mta: Mta, rcpt: str, utf8: bool
) -> None:
    """Rspamd's recipient list is empty for an SMTPUTF8 recipient and holds a quoted local
    part unquoted ("john doe@...", "bob@evil.example,x@..."), which re-injection would send
    elsewhere. The rule pushes no such message: a plain reject (as without the service), not
    a push the service refuses (which deferred it at every retry) nor a copy released to
    another address."""
    raw = message(f"Offer {uuid.uuid4().hex[:8]}", spam=SCORE_SPAM)
    code, reply = transaction(mta.smtp_port, raw, [rcpt], utf8=utf8)
    assert code == 554 and not LINK.search(reply), (code, reply)
    assert kept_recipients(service) == []


def test_a_nul_in_an_encoded_subject_is_rejected_with_a_link_and_kept(service: Stack, mta: Mta) -> None:
    """A Subject of ``=?utf-8?q?...=00...?=`` (plain ASCII on the wire, any sender can send it)
    decodes to a NUL that PostgreSQL refuses: the push is a 500 and the message is deferred
    on every retry, never rejected with a link."""
    raw = message(f"=?utf-8?q?Invoice=00_{uuid.uuid4().hex[:8]}?=", spam=SCORE_SPAM)
    code, reply = transaction(mta.smtp_port, raw, ["bob@example.net"])
    assert code == 554 and LINK.search(reply), (code, reply)
    assert kept_recipients(service) == ["bob@example.net"]


def test_an_smtputf8_envelope_sender_gets_a_plain_reject_not_a_release_as_a_bounce(service: Stack, mta: Mta) -> None:
    """Rspamd cannot name a UTF-8 MAIL FROM; read as the null sender, the release would
    re-inject the message as a bounce (MAIL FROM:<>), losing replies and bounces. The rule
    pushes no such message: a plain reject, nothing kept."""
    sender = "j\u00f6rg@partner.example"
    with smtplib.SMTP("127.0.0.1", mta.smtp_port, timeout=60) as client:
        client.ehlo("client.example.org")
        with pytest.raises(smtplib.SMTPDataError) as refused:
            raw = message(f"Offer {uuid.uuid4().hex[:8]}", spam=SCORE_SPAM)
            client.sendmail(sender, ["bob@example.net"], raw, mail_options=["SMTPUTF8"])
    assert refused.value.smtp_code == 554 and not LINK.search(refused.value.smtp_error.decode())
    assert kept_recipients(service) == []


def test_the_reinjection_listener_takes_mail_only_for_this_servers_domains(service: Stack, mta: Mta) -> None:
    """The listener skips the filter: to anyone who may connect it would be an open relay.
    It takes mail for the domains the MX serves and refuses others (reject_unauth_destination)."""
    code, reply = send(mta.relay_port, message("Relay attempt"), ("victim@elsewhere.example",))
    assert code == 554 and "Relay access denied" in reply, (code, reply)
