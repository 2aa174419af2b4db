"""Turn rows into what people see: plain-words status for senders and recipients.

The same dictionaries feed the HTML pages and the JSON the live-status script polls, so the
two can never disagree.
"""

from __future__ import annotations

from typing import Any

from flask_babel import gettext
from flask_babel import lazy_gettext as _l

from release.core.choices import can_delete
from release.core.release import can_request_release
from release.core.summaries import ReportSummary
from release.db.models import Recipient
from release.db.states import FINAL_RECIPIENT_STATES, FINAL_REPORT_STATES, RecipientState, ReportState
from release.web.untrusted import neutralise

REPORT_WORDS: dict[str, tuple[Any, Any]] = {
    ReportState.PENDING: (_l("Report received"), _l("We are looking for your message on the mail server.")),
    ReportState.LOCATING: (_l("Working on it"), _l("We found your message and are notifying the recipients.")),
    ReportState.NOTIFIED: (_l("Recipients notified"), _l("The recipients were told and can now release your message.")),
    ReportState.NOT_FOUND: (
        _l("Message not found"),
        _l(
            "The mail server no longer holds this message: it is older than the retention time or "
            "was already removed. Please send it again."
        ),
    ),
    ReportState.FAILED: (
        _l("Something went wrong"),
        _l("We could not complete your report. The administrators can see what happened."),
    ),
}
RECIPIENT_WORDS: dict[str, Any] = {
    RecipientState.NOTIFY_PENDING: _l("notification being sent"),
    RecipientState.NOTIFIED: _l("notified"),
    RecipientState.RELEASE_REQUESTED: _l("release requested"),
    RecipientState.RELEASED: _l("released"),
    RecipientState.EXPIRED: _l("expired (no longer held)"),
    RecipientState.FAILED: _l("could not be notified"),
    RecipientState.APPROVAL_PENDING: _l("release waiting for an administrator's approval"),
    RecipientState.RELEASE_DENIED: _l("release refused by an administrator"),
    RecipientState.DELETED: _l("deleted by the recipient"),
}
RELEASE_WORDS: dict[str, tuple[Any, Any]] = {
    RecipientState.NOTIFIED: (_l("Held as suspected spam"), _l("You can release this message to your mailbox.")),
    RecipientState.RELEASE_REQUESTED: (
        _l("Releasing"),
        _l("We asked the mail server to deliver this message. This takes a moment."),
    ),
    RecipientState.RELEASED: (_l("Released"), _l("The message was handed back for delivery to your mailbox.")),
    RecipientState.EXPIRED: (
        _l("Expired"),
        _l("The mail server no longer holds this message, so it cannot be released."),
    ),
    RecipientState.FAILED: (
        _l("Release failed"),
        _l("The message could not be released. Please contact your mail administrator."),
    ),
    RecipientState.NOTIFY_PENDING: (_l("Held as suspected spam"), _l("You can release this message to your mailbox.")),
    RecipientState.APPROVAL_PENDING: (
        _l("Waiting for approval"),
        _l(
            "This message looks risky, so your mail administrators check it before it is released. "
            "We will email you their decision."
        ),
    ),
    RecipientState.RELEASE_DENIED: (
        _l("Release refused"),
        _l("Your mail administrators decided not to release this message. It stays held and is deleted."),
    ),
    RecipientState.DELETED: (_l("Deleted"), _l("You deleted this message. It will not be delivered.")),
}
NEEDS_APPROVAL_DETAIL = _l(
    "This message looks risky (for example a high spam score), so your mail administrators must "
    "approve its release. You can ask them to, or delete it."
)


STATE_LABELS: dict[str, Any] = {
    ReportState.PENDING: _l("pending"),
    ReportState.LOCATING: _l("locating"),
    ReportState.NOTIFIED: _l("notified"),
    ReportState.NOT_FOUND: _l("not found"),
    ReportState.FAILED: _l("failed"),
    RecipientState.NOTIFY_PENDING: _l("notify pending"),
    RecipientState.RELEASE_REQUESTED: _l("release requested"),
    RecipientState.RELEASED: _l("released"),
    RecipientState.EXPIRED: _l("expired"),
    RecipientState.APPROVAL_PENDING: _l("approval pending"),
    RecipientState.RELEASE_DENIED: _l("release denied"),
    RecipientState.DELETED: _l("deleted"),
}

TONES: dict[str, str] = {
    RecipientState.RELEASED: "success",
    ReportState.NOTIFIED: "primary",
    RecipientState.EXPIRED: "warning",
    ReportState.NOT_FOUND: "warning",
    ReportState.FAILED: "danger",
    RecipientState.RELEASE_DENIED: "danger",
    RecipientState.APPROVAL_PENDING: "info",
}


# The report states whose status tells the sender that a failing gateway call is being retried.
RETRY_SHOWN_STATES = (ReportState.PENDING, ReportState.LOCATING)


def report_status(report: ReportSummary, *, still_retrying: bool = False) -> dict[str, Any]:
    """The sender's view of a report (recipient addresses masked)."""
    headline, detail = (str(words) for words in REPORT_WORDS[report.state])
    if still_retrying and report.state in RETRY_SHOWN_STATES:
        detail = gettext("The mail server is not answering right now; we keep trying, nothing is lost.")
    released = sum(r.state == RecipientState.RELEASED for r in report.recipients)
    if report.state == ReportState.NOTIFIED and released:
        total = len(report.recipients)
        headline = (
            gettext("Released")
            if released == total
            else gettext("Released by %(released)d of %(total)d recipients", released=released, total=total)
        )
        detail = gettext("Your message was delivered to the recipients who released it.")
    return {
        "state": report.state,
        "final": report.state in FINAL_REPORT_STATES,
        "tone": "success" if released else TONES.get(report.state, "secondary"),
        "state_label": str(STATE_LABELS[report.state]),
        "headline": headline,
        "detail": detail,
        "recipients": [
            {"address": neutralise(mask_address(r.address)), "state": r.state, "label": str(RECIPIENT_WORDS[r.state])}
            for r in report.recipients
        ],
    }


def release_status(recipient: Recipient, *, expired_now: bool = False, needs_approval: bool = False) -> dict[str, Any]:
    """The recipient's view of their copy; a copy past its time shows as expired."""
    live = (RecipientState.NOTIFIED, RecipientState.NOTIFY_PENDING, RecipientState.APPROVAL_PENDING)
    state = RecipientState.EXPIRED if expired_now and recipient.state in live else recipient.state
    headline, detail = (str(words) for words in RELEASE_WORDS[state])
    can_release = state == recipient.state and can_request_release(recipient)
    if can_release and needs_approval:
        detail = str(NEEDS_APPROVAL_DETAIL)
    return {
        "state": state,
        "state_label": str(STATE_LABELS[state]),
        "final": state in FINAL_RECIPIENT_STATES,
        "tone": TONES.get(state, "secondary"),
        "headline": headline,
        "detail": detail,
        "can_release": can_release,
        "needs_approval": can_release and needs_approval,
        "can_delete": state == recipient.state and can_delete(recipient),
    }


def mask_address(address: str) -> str:
    """Show enough of an address for a sender to recognise it, not enough to harvest it."""
    local, _, domain = address.partition("@")
    if not domain:
        return "***"
    shown = local[:1] if len(local) <= 3 else local[:2]
    return f"{shown}{'*' * 3}@{domain}"
