"""Assemble the service's mails: multipart/alternative with a UTF-8 text and HTML body.

The worker builds one mail per recipient, hundreds a second under a backlog, and the email
package's generic path (``set_content``, ``add_alternative``) parses every header it
writes, some of them several times: it was 40 % of the worker's CPU. Here the headers that
are the same in every mail are parsed once per process and reused (header objects are
immutable strings), and the bodies are quoted-printable encoded by ``binascii``. The result
is an ordinary :class:`EmailMessage` under the default policy, which still parses and checks
every header that varies (addresses, subject, Message-ID), so CR/LF can never add a header.
"""

from __future__ import annotations

import binascii
import secrets
from datetime import datetime
from email.headerregistry import Address, HeaderRegistry
from email.message import EmailMessage
from email.policy import default
from functools import lru_cache
from typing import Any


class _ClassCachingRegistry(HeaderRegistry):
    """The standard header registry, minus a new class per header: CPython's builds one with
    ``type()`` on every lookup, which costs time and leaves a cycle per header for the
    garbage collector (the worker's memory grew with every mail)."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls


POLICY = default.clone(header_factory=_ClassCachingRegistry())


@lru_cache(maxsize=256)
def _constant(name: str, value: str) -> Any:
    """A parsed header for a value many mails share (the From address, MIME headers)."""
    return POLICY.header_factory(name, value)


def quoted_printable(text: str) -> str:
    """UTF-8 quoted-printable, lines within 76 characters, line breaks kept."""
    return binascii.b2a_qp(text.encode("utf-8"), istext=True).decode("ascii")


def _text_part(subtype: str, body: str) -> EmailMessage:
    part = EmailMessage(POLICY)
    part["Content-Type"] = _constant("Content-Type", f'text/{subtype}; charset="utf-8"')
    part["Content-Transfer-Encoding"] = _constant("Content-Transfer-Encoding", "quoted-printable")
    part.set_payload(quoted_printable(body))
    return part


def alternative_mail(
    *, sender: str, to: Address, subject: str, date: datetime, message_id: str, text: str, html: str
) -> EmailMessage:
    """The mail, headers in the usual order; ``subject`` and ``message_id`` already cleaned."""
    msg = EmailMessage(POLICY)
    msg["From"] = _constant("From", sender)
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = date
    msg["Message-ID"] = message_id
    # RFC 3834: tells auto-responders (vacation replies) not to answer us.
    msg["Auto-Submitted"] = _constant("Auto-Submitted", "auto-generated")
    msg["X-Auto-Response-Suppress"] = _constant("X-Auto-Response-Suppress", "All")
    msg["MIME-Version"] = _constant("MIME-Version", "1.0")
    # Quoted-printable bodies never hold "==" unescaped, so this boundary cannot clash.
    boundary = "=" * 15 + secrets.token_hex(12) + "=="
    msg["Content-Type"] = POLICY.header_factory("Content-Type", f'multipart/alternative; boundary="{boundary}"')
    msg.attach(_text_part("plain", text))
    msg.attach(_text_part("html", html))
    return msg
