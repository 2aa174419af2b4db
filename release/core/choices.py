"""The recipient's choices besides a plain release, and the release policy behind them.

Release (held for an admin's approval when the policy says the copy is too risky), delete,
and "release and always allow this sender". Like every domain step, web-side steps only write
rows and jobs; the worker runs :meth:`Choices.discard` (gateway delete) and :meth:`Choices.outcome_mail`.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from release.config import PolicySettings
from release.core import history
from release.core.context import Context, call_gateway, end_transaction
from release.core.release import Releases, can_request_release
from release.db.models import AllowedSender, Recipient
from release.db.states import JobKind, RecipientState
from release.jobs import queue as jobs
from release.jobs.outcomes import PermanentFailure, RetryLater
from release.mail.compose import Outcome, build_outcome

ADDRESS_LIMIT = 320
DELETABLE_STATES = (RecipientState.APPROVAL_PENDING,)


def needs_approval(policy: PolicySettings, recipient: Recipient) -> str | None:
    """Why this copy needs an admin's approval to be released, or None."""
    limit, score = policy.max_spam_score, recipient.spam_score
    if limit is not None and score is not None and score > limit:
        return f"spam score {score:g} is above {limit:g}"
    if recipient.held_in in policy.high_risk_quarantines:
        return f"held in the high-risk quarantine {recipient.held_in}"
    return None


def can_delete(recipient: Recipient) -> bool:
    """The recipient may throw the copy away while it is still theirs to decide on."""
    return can_request_release(recipient) or recipient.state in DELETABLE_STATES


def is_allowed(session: Session, recipient: str, sender: str) -> bool:
    """Has this recipient said "always allow" for this sender (case-insensitive)?"""
    query = select(AllowedSender.id).where(
        AllowedSender.recipient == recipient.strip().lower(), AllowedSender.sender == sender.strip().lower()
    )
    return session.scalar(query.limit(1)) is not None


class Choices:
    """The steps; a plain release goes through :class:`Releases`."""

    def __init__(self, ctx: Context, releases: Releases) -> None:
        self.ctx = ctx
        self.releases = releases

    @property
    def policy(self) -> PolicySettings:
        return self.ctx.settings.policy

    # -- web side --------------------------------------------------------------------------

    def release(self, session: Session, recipient: Recipient, *, always_allow: bool = False) -> Recipient:
        """Release, or ask the admins first when the policy holds the copy back; commits."""
        session.refresh(recipient, with_for_update=True)
        if not can_request_release(recipient):
            session.commit()
            return recipient
        reason = needs_approval(self.policy, recipient)
        if reason is None:
            if always_allow:
                # Never for a held-back copy: that would let a phish whitelist its own sender.
                self._allow(session, recipient)
            return self.releases.request(session, recipient)
        if recipient.expires_at <= self.ctx.clock():
            return self.releases.request(session, recipient)  # marks it expired
        recipient.state = RecipientState.APPROVAL_PENDING
        recipient.release_requested_at = self.ctx.clock()
        history.record(session, "recipient", "approval_requested", recipient.report, recipient, reason)
        session.commit()
        return recipient

    def delete(self, session: Session, recipient: Recipient) -> Recipient:
        """Out of reach at once (no release from now on); the worker deletes it on the gateway."""
        session.refresh(recipient, with_for_update=True)
        if not can_delete(recipient):
            session.commit()
            return recipient
        recipient.state = RecipientState.DELETED
        history.record(session, "recipient", "delete_requested", recipient.report, recipient)
        jobs.enqueue(session, JobKind.DISCARD, recipient.id)
        session.commit()
        return recipient

    def _allow(self, session: Session, recipient: Recipient) -> None:
        sender = (recipient.report.envelope_sender or "").strip().lower()
        address = recipient.address.strip().lower()
        if not sender or is_allowed(session, address, sender):
            return
        try:
            with session.begin_nested():
                session.add(AllowedSender(recipient=address[:ADDRESS_LIMIT], sender=sender[:ADDRESS_LIMIT],
                                          source_recipient_id=recipient.id))  # fmt: skip
        except IntegrityError:
            return  # another click stored it first
        history.record(session, "recipient", "sender_allowed", recipient.report, recipient, sender)

    # -- worker side -----------------------------------------------------------------------

    def discard(self, session: Session, recipient_id: int) -> None:
        """Delete the copy the recipient threw away; gone already counts as done."""
        recipient = session.get(Recipient, recipient_id)
        if recipient is None or recipient.state != RecipientState.DELETED:
            return
        report = recipient.report
        gateway = self.ctx.gateway(report.node)
        message_id, queue = report.message_id, recipient.queue
        end_transaction(session)
        affected = call_gateway(gateway.delete, message_id, [queue])
        detail = "deleted from the gateway" if affected else "already gone from the gateway"
        history.record(session, history.SYSTEM, "deleted", report, recipient, detail)
        session.commit()

    def outcome_mail(self, session: Session, recipient_id: int) -> None:
        """Tell the recipient what the admins decided (sent at most once per decision)."""
        recipient = session.get(Recipient, recipient_id)
        if recipient is None or recipient.state == RecipientState.APPROVAL_PENDING:
            return
        approved = recipient.state != RecipientState.RELEASE_DENIED
        report = recipient.report
        settings = self.ctx.settings
        domain = settings.app.public_url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0] or "localhost"
        try:
            message = build_outcome(
                Outcome(
                    to_address=recipient.address,
                    approved=approved,
                    reason=recipient.decision_reason or "",
                    blocked_sender=report.envelope_sender or "",
                    blocked_subject=report.subject or "",
                    release_url=self.ctx.release_url(recipient),
                    message_id=f"<outcome-{recipient.token_hash[:32]}@{domain}>",
                ),
                sender=settings.smtp.sender,
                # In the recipient's language, branded, instance overrides first (like the notification).
                jinja_env=self.ctx.mail_templates.for_address(recipient.address),
            )
        except ValueError as exc:
            raise PermanentFailure(f"cannot build the outcome mail: {exc}") from exc
        session.commit()
        (result,) = self.ctx.mailer.send([message])
        if result.temporary:
            raise RetryLater(f"SMTP: {result.error}")
        action = "outcome_mailed" if result.ok else "outcome_mail_failed"
        history.record(session, history.SYSTEM, action, report, recipient, "" if result.ok else result.error)
        session.commit()

    def discard_gave_up(self, session: Session, recipient_id: int, error: str) -> None:
        """A gateway delete that gave up: recorded; the copy stays deleted (out of reach)."""
        self._gave_up(session, JobKind.DISCARD, recipient_id, error)

    def outcome_mail_gave_up(self, session: Session, recipient_id: int, error: str) -> None:
        """An outcome mail that gave up: recorded; the admins' decision stands."""
        self._gave_up(session, JobKind.OUTCOME_MAIL, recipient_id, error)

    @staticmethod
    def _gave_up(session: Session, kind: JobKind, recipient_id: int, error: str) -> None:
        recipient = session.get(Recipient, recipient_id)
        if recipient is not None:
            history.record(session, history.SYSTEM, f"{kind}_failed", recipient.report, recipient, error)


def pending_count(session: Session) -> int:
    """How many releases wait for an admin (the console's badge)."""
    query = select(func.count()).select_from(Recipient).where(Recipient.state == RecipientState.APPROVAL_PENDING)
    return int(session.scalar(query) or 0)
