"""Releasing a held copy: the recipient asks (web: a row and a job), the worker puts the
copy back into delivery. A copy gone from the gateway is shown as expired, never released."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from release.core import history, links
from release.core.context import Context, call_gateway, end_transaction
from release.core.reports import fail_copy
from release.db.models import Recipient
from release.db.states import JobKind, RecipientState
from release.gateway import DeliveryUncertain, Gateway, GatewayError, GatewayRejected
from release.jobs import queue as jobs
from release.jobs.outcomes import PermanentFailure, RetryLater


class Releases:
    """The release step, web side and worker side."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def request(self, session: Session, recipient: Recipient) -> Recipient:
        """Record the recipient's release request and queue the gateway call (idempotent)."""
        # Re-read under a row lock: two POSTs at once (a double click) must not both see
        # "notified" and queue two release jobs (PostgreSQL; SQLite serialises writers anyway).
        session.refresh(recipient, with_for_update=True)
        if not can_request_release(recipient):
            return recipient
        if recipient.expires_at <= self.ctx.clock():
            recipient.state = RecipientState.EXPIRED
            history.record(session, history.SYSTEM, "expired", recipient.report, recipient)
            session.commit()
            return recipient
        recipient.state = RecipientState.RELEASE_REQUESTED
        recipient.release_requested_at = self.ctx.clock()
        history.record(session, "recipient", "release_requested", recipient.report, recipient)
        jobs.enqueue(session, JobKind.RELEASE, recipient.id)
        session.commit()
        return recipient

    def release(self, session: Session, recipient_id: int) -> None:
        """Put the copy back into delivery; a copy gone from the gateway becomes expired."""
        recipient = session.get(Recipient, recipient_id)
        if recipient is None or recipient.state != RecipientState.RELEASE_REQUESTED:
            return
        report = recipient.report
        gateway = self.ctx.gateway(report.node)
        tried_before = recipient.release_attempted_at is not None
        if not tried_before:
            recipient.release_attempted_at = self.ctx.clock()
        end_transaction(session)
        try:
            definite = bool(gateway.release(report.message_id, recipient.queue))
        except DeliveryUncertain as exc:
            # Only a person can tell whether it arrived (the relay's log): never resent here.
            raise PermanentFailure(str(exc)) from exc
        except GatewayRejected as exc:
            # Refused outright, so this attempt did nothing: do not let a later "gone"
            # be read as "our earlier attempt released it".
            if not tried_before:
                recipient.release_attempted_at = None
                session.commit()
            raise RetryLater(f"gateway: {exc}") from exc
        except GatewayError as exc:
            raise RetryLater(f"gateway: {exc}") from exc
        if definite:
            outcome = RecipientState.RELEASED
        else:
            outcome = _outcome(gateway, report.message_id, recipient.queue, tried_before)
        # Another run of this release (a duplicate job, or a lease that ran out mid-call) may
        # have decided meanwhile: re-read under a row lock and never overwrite its decision
        # with our guess; only a definite release corrects an "expired" it guessed.
        session.refresh(recipient, with_for_update=True)
        if recipient.state != RecipientState.RELEASE_REQUESTED and not (
            definite and recipient.state == RecipientState.EXPIRED
        ):
            session.commit()
            return
        recipient.state = outcome
        if outcome == RecipientState.RELEASED:
            recipient.released_at = self.ctx.clock()
            if getattr(gateway, "learns", False):  # rspamd nodes with a controller: its own job
                jobs.enqueue(session, JobKind.LEARN_HAM, recipient.id)
        history.record(session, history.SYSTEM, outcome, report, recipient)
        session.commit()

    def on_dead(self, session: Session, recipient_id: int, error: str) -> None:
        """The release job ran out of attempts: the copy shows as failed."""
        fail_copy(session, recipient_id, error)


def _outcome(gateway: Gateway, message_id: str, queue: int, tried_before: bool) -> RecipientState:
    """Decide what a release that matched nothing means."""
    copies = call_gateway(gateway.find, message_id, queue)
    if any(c.quarantine is None for c in copies):
        return RecipientState.RELEASED  # already back in the active queue
    if copies:
        raise RetryLater("the gateway still holds the copy but did not release it")
    # Gone. If an earlier attempt may have gone through before a crash, that attempt
    # released it; otherwise the gateway's own retention removed it.
    return RecipientState.RELEASED if tried_before else RecipientState.EXPIRED


def can_request_release(recipient: Recipient) -> bool:
    """Notified, or its mail is on the way (``notified_at`` is stamped before SMTP): a quick
    recipient may click before the worker commits "notified"."""
    return recipient.state == RecipientState.NOTIFIED or (
        recipient.state == RecipientState.NOTIFY_PENDING and recipient.notified_at is not None
    )


def find_recipient_by_token(session: Session, token: str) -> Recipient | None:
    """Look a release token up by its hash; malformed tokens never reach the database."""
    if not links.is_token_shaped(token):
        return None
    return session.scalar(select(Recipient).where(Recipient.token_hash == links.token_hash(token)))
