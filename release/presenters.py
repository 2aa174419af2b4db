"""Turn rows into what people see: plain-words status for senders and recipients.

The same dictionaries feed the HTML pages and the JSON the live-status script polls, so the
two can never disagree.
"""

from __future__ import annotations

from typing import Any

from .choices import can_delete
from .flow import FINAL_RECIPIENT_STATES, FINAL_REPORT_STATES, can_request_release, mask_address
from .models import Recipient, Report

REPORT_WORDS = {
    "pending": ("Report received", "We are looking for your message on the mail server."),
    "locating": ("Working on it", "We found your message and are notifying the recipients."),
    "notified": ("Recipients notified", "The recipients were told and can now release your message."),
    "not_found": (
        "Message not found",
        "The mail server no longer holds this message: it is older than the retention time or "
        "was already removed. Please send it again.",
    ),
    "failed": (
        "Something went wrong",
        "We could not complete your report. The administrators can see what happened.",
    ),
}
RECIPIENT_WORDS = {
    "notify_pending": "notification being sent",
    "notified": "notified",
    "release_requested": "release requested",
    "released": "released",
    "expired": "expired (no longer held)",
    "failed": "could not be notified",
    "approval_pending": "release waiting for an administrator's approval",
    "release_denied": "release refused by an administrator",
    "deleted": "deleted by the recipient",
}
RELEASE_WORDS = {
    "notified": ("Held as suspected spam", "You can release this message to your mailbox."),
    "release_requested": ("Releasing", "We asked the mail server to deliver this message. This takes a moment."),
    "released": ("Released", "The message was handed back for delivery to your mailbox."),
    "expired": ("Expired", "The mail server no longer holds this message, so it cannot be released."),
    "failed": ("Release failed", "The message could not be released. Please contact your mail administrator."),
    "notify_pending": ("Held as suspected spam", "You can release this message to your mailbox."),
    "approval_pending": (
        "Waiting for approval",
        "This message looks risky, so your mail administrators check it before it is released. "
        "We will email you their decision.",
    ),
    "release_denied": (
        "Release refused",
        "Your mail administrators decided not to release this message. It stays held and is deleted.",
    ),
    "deleted": ("Deleted", "You deleted this message. It will not be delivered."),
}
NEEDS_APPROVAL_DETAIL = (
    "This message looks risky (for example a high spam score), so your mail administrators must "
    "approve its release. You can ask them to, or delete it."
)


TONES = {
    "released": "success",
    "notified": "primary",
    "expired": "warning",
    "not_found": "warning",
    "failed": "danger",
    "release_denied": "danger",
    "approval_pending": "info",
}


# The report states whose status tells the sender that a failing gateway call is being retried.
RETRY_SHOWN_STATES = frozenset({"pending", "locating"})


def report_status(report: Report, *, still_retrying: bool = False) -> dict[str, Any]:
    """The sender's view of a report (recipient addresses masked)."""
    headline, detail = REPORT_WORDS[report.state]
    if still_retrying and report.state in RETRY_SHOWN_STATES:
        detail = "The mail server is not answering right now; we keep trying, nothing is lost."
    released = sum(r.state == "released" for r in report.recipients)
    if report.state == "notified" and released:
        total = len(report.recipients)
        headline = "Released" if released == total else f"Released by {released} of {total} recipients"
        detail = "Your message was delivered to the recipients who released it."
    return {
        "state": report.state,
        "final": report.state in FINAL_REPORT_STATES,
        "tone": "success" if released else TONES.get(report.state, "secondary"),
        "headline": headline,
        "detail": detail,
        "recipients": [
            {"address": mask_address(r.address), "state": r.state, "label": RECIPIENT_WORDS[r.state]}
            for r in report.recipients
        ],
    }


def release_status(recipient: Recipient, *, expired_now: bool = False, needs_approval: bool = False) -> dict[str, Any]:
    """The recipient's view of their copy; a copy past its time shows as expired."""
    live = ("notified", "notify_pending", "approval_pending")
    state = "expired" if expired_now and recipient.state in live else recipient.state
    headline, detail = RELEASE_WORDS[state]
    can_release = state == recipient.state and can_request_release(recipient)
    if can_release and needs_approval:
        detail = NEEDS_APPROVAL_DETAIL
    return {
        "state": state,
        "final": state in FINAL_RECIPIENT_STATES,
        "tone": TONES.get(state, "secondary"),
        "headline": headline,
        "detail": detail,
        "can_release": can_release,
        "needs_approval": can_release and needs_approval,
        "can_delete": state == recipient.state and can_delete(recipient),
    }
