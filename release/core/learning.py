"""Learn-ham: a released message from an rspamd node is taught to Rspamd as ham, so its
filter errs less next time. Its own job, queued with the release's outcome: a controller
that is down or refuses delays or loses the lesson, never the release."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from release.core import history
from release.core.context import Context, call_gateway, end_transaction
from release.db.models import Recipient
from release.db.states import RecipientState
from release.gateway import GatewayRejected
from release.jobs.outcomes import PermanentFailure

log = logging.getLogger(__name__)


class HamLearning:
    """The worker's "learn_ham" step."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def learn(self, session: Session, recipient_id: int) -> None:
        """Send the released message to the node's controller; RetryLater on an outage."""
        recipient = session.get(Recipient, recipient_id)
        if recipient is None or recipient.state != RecipientState.RELEASED:
            return
        report = recipient.report
        gateway = self.ctx.gateway(report.node)
        end_transaction(session)
        try:
            learned = call_gateway(gateway.learn_ham, report.message_id)  # type: ignore[attr-defined]
        except GatewayRejected as exc:  # a wrong password or a refusal: no retry mends it
            raise PermanentFailure(str(exc)) from exc
        detail = "taught to Rspamd as ham" if learned else "not taught: the copy was no longer kept"
        history.record(session, history.SYSTEM, "learned_ham", report, recipient, detail)
        session.commit()

    def on_dead(self, session: Session, recipient_id: int, error: str) -> None:
        """The lesson is lost; the release stands. Admins see it in the audit log."""
        history.audit(session, history.SYSTEM, "learn_ham.failed", f"recipient:{recipient_id}", error)
        session.commit()
        log.warning("learn-ham for recipient %s gave up: %s", recipient_id, error)
