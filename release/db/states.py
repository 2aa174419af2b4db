"""Every state a row can be in, as a StrEnum: the one place a state's name is spelled.

The schema's CHECK constraints are built from these, so a state missing here cannot be stored.
A member is a ``str``: it compares equal to the value read back from the database.
"""

from __future__ import annotations

from enum import StrEnum


class ReportState(StrEnum):
    """A sender's report (DESIGN §1)."""

    PENDING = "pending"
    LOCATING = "locating"
    NOTIFIED = "notified"
    NOT_FOUND = "not_found"
    FAILED = "failed"


class RecipientState(StrEnum):
    """One recipient's held copy (DESIGN §1, plus the release policy's and deletion's states)."""

    NOTIFY_PENDING = "notify_pending"
    NOTIFIED = "notified"
    RELEASE_REQUESTED = "release_requested"
    RELEASED = "released"
    EXPIRED = "expired"
    FAILED = "failed"
    APPROVAL_PENDING = "approval_pending"
    RELEASE_DENIED = "release_denied"
    DELETED = "deleted"


class JobState(StrEnum):
    """A durable job in the outbox."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    DEAD = "dead"


class JobKind(StrEnum):
    """What a job does; each kind has one entry in the job registry (release.jobs.registry)."""

    LOCATE = "locate"
    NOTIFY = "notify"
    RELEASE = "release"
    DELETE = "delete"
    ENFORCE = "enforce"
    DISCARD = "discard"
    OUTCOME_MAIL = "outcome_mail"
    NDR = "ndr"
    LEARN_HAM = "learn_ham"


class NoticeState(StrEnum):
    """A held message the gateway pushed (sender_notice = "ndr"): its report to the sender."""

    QUEUED = "queued"
    SENT = "sent"
    NOT_FOUND = "not_found"  # the copies were gone: nothing to report
    SKIPPED = "skipped"  # a bounce (null sender): never answered with a report
    FAILED = "failed"


class StoredQuarantine(StrEnum):
    """Which retention a copy the service stores itself (rspamd nodes) is held under; a
    released copy has none (NULL)."""

    SHORT = "short"
    LONG = "long"


class AdminRole(StrEnum):
    """What a console account may do."""

    ADMIN = "admin"
    VIEWER = "viewer"


# Tuples, in declaration order: they also go into SQL (``IN (...)``), which must not vary.
FINAL_REPORT_STATES = (ReportState.NOTIFIED, ReportState.NOT_FOUND, ReportState.FAILED)
FINAL_RECIPIENT_STATES = (
    RecipientState.RELEASED,
    RecipientState.EXPIRED,
    RecipientState.FAILED,
    RecipientState.RELEASE_DENIED,
    RecipientState.DELETED,
)
# The copies the gateway still holds for the service.
LIVE_RECIPIENT_STATES = tuple(s for s in RecipientState if s not in FINAL_RECIPIENT_STATES)
FINISHED_JOB_STATES = (JobState.DONE, JobState.DEAD)
