"""Compose the notification and outcome mails from a stranger's text.

Everything about the blocked message (sender address, subject) was chosen by a stranger, so it
is cleaned before it touches a header or a body: control characters go, lengths are bounded,
and anything that looks like a link is defanged so mail clients do not turn it into one. The
sender's comment never goes into a mail (DESIGN §2.2): inboxes must not become a free channel.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage

from jinja2 import Environment

SUBJECT_LIMIT = 100
ADDRESS_LIMIT = 254
ORGANISATION_LIMIT = 100
ELLIPSIS = "…"
TEXT_TEMPLATE = "mail/notification.txt"
HTML_TEMPLATE = "mail/notification.html"
SUBJECT_TEMPLATE = "mail/subject.txt"

# Hostname-like runs (a.b, with a final label of letters) and URL schemes: what mail clients
# auto-link. "3.5" or "no. 7" stay as they are.
_HOSTLIKE = re.compile(r"(?<=[\w-])[.\u3002\uff0e\uff61](?=[\w-]*[^\W\d_][\w-]*\b)")
_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")
_SCHEME = re.compile(r"\b([a-z][a-z0-9+.-]{1,20}):(//|(?=[^\s]*@))", re.IGNORECASE)
_WWW = re.compile(r"\bwww\.", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


# --------------------------------------------------------------------------- cleaning text


def clean_text(value: str, limit: int) -> str:
    """Single-line text safe for a header: no control/format characters, bounded with "…".

    Format characters (category Cf) include bidi overrides that can disguise text; line and
    paragraph separators would break lines in some clients, so all of them become spaces or go.
    """
    chars = []
    for ch in value:
        category = unicodedata.category(ch)
        if category in ("Cc", "Zl", "Zp") or ch.isspace():
            chars.append(" ")
        elif category in ("Cf", "Cs", "Co", "Cn"):
            continue
        else:
            chars.append(ch)
    text = _SPACES.sub(" ", "".join(chars)).strip()
    if len(text) > limit:
        text = text[: limit - len(ELLIPSIS)].rstrip() + ELLIPSIS
    return text


def defang(text: str) -> str:
    """Make link-like text inert: ``http://x.com`` → ``hxxp[://]x[.]com``, ``a@b.org`` → ``a@b[.]org``.

    Mail clients auto-link URLs, host names and addresses even in plain text; a stranger's
    subject must not become a clickable link in a message that comes from us.
    """
    text = _SCHEME.sub(lambda m: _defang_scheme(m.group(1)) + ("[://]" if m.group(2) else "[:]"), text)
    text = _WWW.sub(lambda m: m.group(0)[:3] + "[.]", text)
    text = _IPV4.sub(lambda m: m.group(0).replace(".", "[.]"), text)
    return _HOSTLIKE.sub("[.]", text)


def _defang_scheme(scheme: str) -> str:
    low = scheme.lower()
    if low in ("http", "https"):
        return scheme[0] + "xx" + scheme[3:]
    return scheme


def untrusted(value: str, limit: int) -> str:
    """Clean, bound and defang a stranger's text for both header and body."""
    # Defang after bounding would let the expansion exceed the bound a little; that is fine
    # (the bound protects layout and header length, and "[.]" only adds a few characters).
    return defang(clean_text(value, limit))


def one_address(value: str, role: str = "recipient") -> Address:
    """Parse an address strictly: one bare address, nothing that could add a header or a
    second recipient. ValueError (naming the ``role``) for anything else, at once: no retry
    makes a bad address good."""
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value) or len(value) > ADDRESS_LIMIT:
        raise ValueError(f"the {role} address contains control characters or is too long")
    try:
        address = Address(addr_spec=value.strip())
    except (ValueError, IndexError, MessageError) as exc:  # HeaderParseError is a MessageError
        raise ValueError(f"invalid {role} address: {exc}") from None
    if not address.username or not address.domain:
        raise ValueError(f"the {role} address needs a local part and a domain")
    return address


def _message_id(value: str) -> str:
    cleaned = clean_text(value, 250).replace(" ", "")
    cleaned = cleaned.strip("<>")
    if "@" not in cleaned or not cleaned.isascii() or any(c in cleaned for c in '<>()[]\\,;:"'):
        raise ValueError("message_id must look like <unique@domain>")
    return f"<{cleaned}>"


def _format_time(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("notification times must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _mail(
    *, sender: str, to: Address, subject: str, date: datetime, message_id: str, text: str, html: str
) -> EmailMessage:
    """A multipart/alternative mail (UTF-8 text, then HTML) under the standard email policy.

    The policy parses every header it is given and refuses CR/LF in any of them. Bodies are
    quoted-printable so the mail stays 7-bit clean: no relay on the way needs 8BITMIME.
    """
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = date
    msg["Message-ID"] = message_id
    # RFC 3834: tells auto-responders (vacation replies) not to answer us.
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(text, cte="quoted-printable")
    msg.add_alternative(html, subtype="html", cte="quoted-printable")
    return msg


# --------------------------------------------------------------------------- the notification


@dataclass(frozen=True)
class Notification:
    """What a recipient is told about one held message (deliberately no sender comment)."""

    to_address: str
    release_url: str
    blocked_sender: str
    blocked_subject: str
    received_at: datetime
    expires_at: datetime
    node: str
    # Set by the caller and derived from stable data, so a resend after a crash has the same
    # Message-ID and receiving systems can drop the duplicate.
    message_id: str
    organisation: str = ""


def notification_context(n: Notification) -> dict[str, str]:
    """Template variables, all already cleaned (the HTML template still autoescapes them).

    An empty subject or sender stays empty: the templates say "(no subject)" in the mail's language.
    """
    subject = untrusted(n.blocked_subject, SUBJECT_LIMIT)
    sender = untrusted(n.blocked_sender, ADDRESS_LIMIT)
    return {
        "recipient": n.to_address,
        "sender": sender,
        "subject": subject,
        "received": _format_time(n.received_at),
        "expires": _format_time(n.expires_at),
        "release_url": n.release_url,
        "organisation": clean_text(n.organisation, ORGANISATION_LIMIT),
        "node": clean_text(n.node, 64),
    }


def _autoescapes(env: Environment, name: str) -> bool:
    setting = env.autoescape
    return bool(setting(name) if callable(setting) else setting)


def build_notification(
    n: Notification, *, sender: str, jinja_env: Environment, now: datetime | None = None
) -> EmailMessage:
    """The multipart/alternative notification mail for one recipient.

    ``jinja_env`` decides the language and branding (see :mod:`release.mail.templates`); the
    subject is a template too, so it is translated and can be overridden like the body.
    Raises ValueError for a recipient or Message-ID that cannot be sent safely (a permanent
    problem: retrying will not fix it) or a Jinja environment that would not escape the HTML.
    """
    if not _autoescapes(jinja_env, HTML_TEMPLATE):
        raise ValueError("the Jinja environment must autoescape .html templates")
    context = notification_context(n)
    text = jinja_env.get_template(TEXT_TEMPLATE).render(context)
    html = jinja_env.get_template(HTML_TEMPLATE).render(context)

    return _mail(
        sender=sender,
        to=one_address(n.to_address),
        subject=clean_text(jinja_env.get_template(SUBJECT_TEMPLATE).render(context), 2 * SUBJECT_LIMIT),
        date=now or datetime.now(UTC),
        message_id=_message_id(n.message_id),
        text=text,
        html=html,
    )


# --------------------------------------------------------------------------- the outcome


OUTCOME_TEXT_TEMPLATE = "mail/outcome.txt"
OUTCOME_HTML_TEMPLATE = "mail/outcome.html"
OUTCOME_SUBJECT_TEMPLATE = "mail/outcome_subject.txt"
REASON_LIMIT = 500


@dataclass(frozen=True)
class Outcome:
    """An admin's decision on a release the policy held back (never the sender's comment)."""

    to_address: str
    approved: bool
    reason: str
    blocked_sender: str
    blocked_subject: str
    release_url: str
    message_id: str


def build_outcome(o: Outcome, *, sender: str, jinja_env: Environment, now: datetime | None = None) -> EmailMessage:
    """The multipart/alternative mail telling a recipient what the administrators decided."""
    if not _autoescapes(jinja_env, OUTCOME_HTML_TEMPLATE):
        raise ValueError("the Jinja environment must autoescape .html templates")
    context = {
        "approved": o.approved,
        "reason": clean_text(o.reason, REASON_LIMIT),
        # Empty stays empty: the templates say "(no subject)" in the mail's language.
        "sender": untrusted(o.blocked_sender, ADDRESS_LIMIT),
        "subject": untrusted(o.blocked_subject, SUBJECT_LIMIT),
        "release_url": o.release_url,
    }
    subject = jinja_env.get_template(OUTCOME_SUBJECT_TEMPLATE).render(context)
    return _mail(
        sender=sender,
        to=one_address(o.to_address),
        subject=clean_text(subject, 2 * SUBJECT_LIMIT),
        date=now or datetime.now(UTC),
        message_id=_message_id(o.message_id),
        text=jinja_env.get_template(OUTCOME_TEXT_TEMPLATE).render(context),
        html=jinja_env.get_template(OUTCOME_HTML_TEMPLATE).render(context),
    )
