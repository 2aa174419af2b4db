"""The raw bytes a simulated 5.x node keeps for a message (its ``.eml``), as a mail client
would have sent them: RFC 5322 headers, CRLF line ends, a plain-text body.

Built by hand rather than with :mod:`email`: the overview form and ``--add`` take any sender
text, and benchmarks add thousands of messages; building must be cheap and never fail.
"""

from __future__ import annotations

import re
from email.header import Header
from email.utils import formatdate, make_msgid

CRLF = "\r\n"
PLAIN_DOMAIN = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


def plain_message(sender: str, recipients: list[str], subject: str, ts: float, body: str | None = None) -> bytes:
    """A text/plain message from ``sender`` to ``recipients``, dated ``ts`` (Unix time)."""
    text = body if body is not None else _default_body(sender, subject)
    headers = [
        f"From: {sender}",
        f"To: {', '.join(recipients)}",
        f"Subject: {header_text(subject)}",
        f"Date: {formatdate(ts, usegmt=True)}",
        f"Message-ID: {make_msgid(domain=message_id_domain(sender))}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    lines = text.replace(CRLF, "\n").split("\n")
    return (CRLF.join(headers) + CRLF + CRLF + CRLF.join(lines)).encode("utf-8")


def header_text(value: str) -> str:
    """A header value as it travels: ASCII as it is (folding a long word would add a space),
    other text as RFC 2047 encoded words, folded with CRLF."""
    if value.isascii():
        return value
    return Header(value, "utf-8", header_name="Subject").encode(linesep=CRLF)


def message_id_domain(sender: str) -> str:
    """The sender's domain for a Message-ID when it is a plain name, else a reserved one."""
    domain = sender.rpartition("@")[2]
    return domain if PLAIN_DOMAIN.fullmatch(domain) else "simulator.invalid"


def _default_body(sender: str, subject: str) -> str:
    name = sender.partition("@")[0] or "the sender"
    return f"Hello,\n\n{subject or 'A short note.'}\n\nBest regards,\n{name}\n"
