"""Turn rows into what people see: plain-words status for senders and recipients.

The same dictionaries feed the HTML pages and the JSON the live-status script polls, so the
two can never disagree.
"""

from __future__ import annotations

from typing import Any

from flask_babel import gettext
from flask_babel import lazy_gettext as _l

from release.core.choices import can_delete
from release.core.flow import FINAL_RECIPIENT_STATES, FINAL_REPORT_STATES, can_request_release, mask_address
from release.core.summaries import ReportSummary
from release.db.models import Recipient

REPORT_WORDS = {
    "pending": (_l("Report received"), _l("We are looking for your message on the mail server.")),
    "locating": (_l("Working on it"), _l("We found your message and are notifying the recipients.")),
    "notified": (_l("Recipients notified"), _l("The recipients were told and can now release your message.")),
    "not_found": (
        _l("Message not found"),
        _l(
            "The mail server no longer holds this message: it is older than the retention time or "
            "was already removed. Please send it again."
        ),
    ),
    "failed": (
        _l("Something went wrong"),
        _l("We could not complete your report. The administrators can see what happened."),
    ),
}
RECIPIENT_WORDS = {
    "notify_pending": _l("notification being sent"),
    "notified": _l("notified"),
    "release_requested": _l("release requested"),
    "released": _l("released"),
    "expired": _l("expired (no longer held)"),
    "failed": _l("could not be notified"),
    "approval_pending": _l("release waiting for an administrator's approval"),
    "release_denied": _l("release refused by an administrator"),
    "deleted": _l("deleted by the recipient"),
}
RELEASE_WORDS = {
    "notified": (_l("Held as suspected spam"), _l("You can release this message to your mailbox.")),
    "release_requested": (
        _l("Releasing"),
        _l("We asked the mail server to deliver this message. This takes a moment."),
    ),
    "released": (_l("Released"), _l("The message was handed back for delivery to your mailbox.")),
    "expired": (_l("Expired"), _l("The mail server no longer holds this message, so it cannot be released.")),
    "failed": (_l("Release failed"), _l("The message could not be released. Please contact your mail administrator.")),
    "notify_pending": (_l("Held as suspected spam"), _l("You can release this message to your mailbox.")),
    "approval_pending": (
        _l("Waiting for approval"),
        _l(
            "This message looks risky, so your mail administrators check it before it is released. "
            "We will email you their decision."
        ),
    ),
    "release_denied": (
        _l("Release refused"),
        _l("Your mail administrators decided not to release this message. It stays held and is deleted."),
    ),
    "deleted": (_l("Deleted"), _l("You deleted this message. It will not be delivered.")),
}
NEEDS_APPROVAL_DETAIL = _l(
    "This message looks risky (for example a high spam score), so your mail administrators must "
    "approve its release. You can ask them to, or delete it."
)


STATE_LABELS = {
    "pending": _l("pending"),
    "locating": _l("locating"),
    "notified": _l("notified"),
    "not_found": _l("not found"),
    "failed": _l("failed"),
    "notify_pending": _l("notify pending"),
    "release_requested": _l("release requested"),
    "released": _l("released"),
    "expired": _l("expired"),
    "approval_pending": _l("approval pending"),
    "release_denied": _l("release denied"),
    "deleted": _l("deleted"),
}

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


def report_status(report: ReportSummary, *, still_retrying: bool = False) -> dict[str, Any]:
    """The sender's view of a report (recipient addresses masked)."""
    headline, detail = (str(words) for words in REPORT_WORDS[report.state])
    if still_retrying and report.state in RETRY_SHOWN_STATES:
        detail = gettext("The mail server is not answering right now; we keep trying, nothing is lost.")
    released = sum(r.state == "released" for r in report.recipients)
    if report.state == "notified" and released:
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
            {"address": mask_address(r.address), "state": r.state, "label": str(RECIPIENT_WORDS[r.state])}
            for r in report.recipients
        ],
    }


def release_status(recipient: Recipient, *, expired_now: bool = False, needs_approval: bool = False) -> dict[str, Any]:
    """The recipient's view of their copy; a copy past its time shows as expired."""
    live = ("notified", "notify_pending", "approval_pending")
    state = "expired" if expired_now and recipient.state in live else recipient.state
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
