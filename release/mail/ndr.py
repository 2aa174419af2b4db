"""The non-delivery report a sender gets when a halon6 node held their message and accepted
it (sender_notice = "ndr"): RFC 3464 ``multipart/report; report-type=delivery-status``.

Built with the email package's public API. The first part says in plain words what
happened and carries the report link; the second is the machine-readable
``message/delivery-status`` (one block per recipient, action failed, status 5.7.1). The
mail goes out with the null envelope sender (:class:`NullSenderMessage`). Subject and
addresses come from the gateway, i.e. from a stranger: cleaned, bounded, the subject defanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.utils import format_datetime

from jinja2 import Environment

from release.mail.compose import ADDRESS_LIMIT, SUBJECT_LIMIT, clean_text, one_address, untrusted
from release.mail.sending import NullSenderMessage

TEXT_TEMPLATE = "mail/ndr.txt"
RECIPIENTS_SHOWN = 10  # named in the text; the delivery-status part lists every one
DIAGNOSTIC = "smtp; 550 5.7.1 Message held as suspected spam"


@dataclass(frozen=True)
class HeldReport:
    """What the sender of a held message is told (and where they can report it)."""

    to_address: str  # the envelope sender
    recipients: Sequence[str]
    subject: str
    received_at: datetime | None
    report_url: str
    valid_until: datetime
    hours: int
    reporting_host: str  # Reporting-MTA: the service's public host name
    message_id: str  # stable per (node, message): a resend after a crash repeats it


def build_ndr(n: HeldReport, *, sender: str, jinja_env: Environment, now: datetime | None = None) -> EmailMessage:
    """The report mail; ValueError for an address or value that cannot be sent safely."""
    if not n.recipients:
        raise ValueError("a delivery report needs at least one recipient")
    host = clean_text(n.reporting_host, 253).replace(" ", "") or "localhost"
    shown = [clean_text(r, ADDRESS_LIMIT) for r in n.recipients[:RECIPIENTS_SHOWN]]
    more = len(n.recipients) - len(shown)
    subject = untrusted(n.subject, SUBJECT_LIMIT)
    text = jinja_env.get_template(TEXT_TEMPLATE).render(
        host=host,
        recipients=", ".join(shown) + (f" and {more} more" if more > 0 else ""),
        subject=subject,
        received=_utc(n.received_at) if n.received_at else "",
        report_url=n.report_url,
        valid_until=_utc(n.valid_until),
        hours=n.hours,
    )
    msg = NullSenderMessage()
    msg["From"] = sender
    msg["To"] = one_address(n.to_address, "sender")
    msg["Subject"] = "Undelivered mail: " + (subject or "(no subject)")
    msg["Date"] = now or datetime.now(UTC)
    msg["Message-ID"] = n.message_id
    # RFC 3834: an automatic answer to a message; auto-responders must not answer it.
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(text, cte="quoted-printable")
    msg.make_mixed()  # the text becomes the first part ...
    msg.set_type("multipart/report")  # ... of a report (RFC 6522)
    msg.set_param("report-type", "delivery-status")
    # typeshed wants a part of the message's own class; any message is a valid part.
    msg.attach(_delivery_status(host, n))  # type: ignore[arg-type]
    return msg


def _delivery_status(host: str, n: HeldReport) -> EmailMessage:
    """The RFC 3464 part: a per-message block, then one block per recipient. Its payload is
    a list of header blocks, the shape the email package parses and generates for this type."""
    per_message = EmailMessage()
    per_message["Reporting-MTA"] = f"dns; {host}"
    if n.received_at:
        per_message["Arrival-Date"] = format_datetime(n.received_at.astimezone(UTC))
    blocks: list[Message[str, str] | str] = [per_message]
    for recipient in n.recipients:
        block = EmailMessage()
        block["Final-Recipient"] = _dsn_address(recipient)
        block["Action"] = "failed"
        block["Status"] = "5.7.1"
        block["Diagnostic-Code"] = DIAGNOSTIC
        blocks.append(block)
    part = EmailMessage()
    part["Content-Type"] = "message/delivery-status"
    part["Content-Transfer-Encoding"] = "7bit"  # RFC 3464 2.1: readable without MIME
    part.set_payload(blocks)
    return part


def _dsn_address(address: str) -> str:
    """``rfc822; a@b`` for an ASCII address; RFC 6533's ``utf-8;`` xtext form otherwise, so
    the part stays 7-bit (``\\x{HEX}`` for non-ASCII and for ``+ = \\``)."""
    cleaned = clean_text(address, ADDRESS_LIMIT).replace(" ", "")
    if cleaned.isascii():
        return f"rfc822; {cleaned}"
    return "utf-8; " + "".join(ch if "!" <= ch <= "~" and ch not in "+=\\" else f"\\x{{{ord(ch):X}}}" for ch in cleaned)


def _utc(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("report times must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
