"""Shared by the mail tests: a notification with sensible values, built and read back."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from typing import Any

import jinja2

from release.mail.compose import Notification, build_notification

SENDER = "Quarantine release <release@example.org>"
RELEASE_URL = "https://release.example.com/release/AbC-123_xyz"
RECEIVED = datetime(2026, 3, 1, 14, 5, tzinfo=UTC)
EXPIRES = datetime(2026, 3, 8, 14, 5, tzinfo=UTC)


def make_notification(**overrides: Any) -> Notification:
    values: dict[str, Any] = {
        "to_address": "bob@example.net",
        "release_url": RELEASE_URL,
        "blocked_sender": "alice@partner.example",
        "blocked_subject": "Quarterly figures",
        "received_at": RECEIVED,
        "expires_at": EXPIRES,
        "node": "mx1",
        "message_id": "<notify-42-7@release.example.com>",
        "organisation": "Example Corp",
    }
    values.update(overrides)
    return Notification(**values)


def roundtrip(msg: EmailMessage) -> EmailMessage:
    """Serialise and parse again, as the receiving side would see it."""
    return BytesParser(policy=default_policy).parsebytes(msg.as_bytes())


def build(jinja_env: jinja2.Environment, **overrides: Any) -> EmailMessage:
    return build_notification(make_notification(**overrides), sender=SENDER, jinja_env=jinja_env)
