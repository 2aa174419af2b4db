"""What every domain step needs: settings, gateways, mailer, mail templates, the clock and
the retention in force. Built once per process (release.container) and shared."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from release.config import Settings
from release.core import links
from release.core.retention import Retention, RetentionCache
from release.db.models import Recipient, utcnow
from release.gateway import Gateway, GatewayError
from release.jobs.outcomes import PermanentFailure, RetryLater
from release.mail.sending import Mailer
from release.mail.templates import MailTemplates


class Context:
    """The collaborators of the domain steps; stateless between calls."""

    def __init__(
        self,
        settings: Settings,
        gateways: Mapping[str, Gateway],
        mailer: Mailer,
        mail_templates: MailTemplates,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.gateways = gateways
        self.mailer = mailer
        self.mail_templates = mail_templates
        self.clock = clock
        self.retention_cache = RetentionCache(settings.retention)

    def retention(self, session: Session | Callable[[], Session]) -> Retention:
        """The retention in force (admin changes made in this process at once, others within
        ``retention.CACHE_SECONDS``); ``session`` may be a function that opens one."""
        return self.retention_cache.get(session)

    def gateway(self, node: str) -> Gateway:
        """The node's gateway; a node no longer configured is a failure no retry can mend."""
        found = self.gateways.get(node)
        if found is None:
            raise PermanentFailure(f"node {node!r} is no longer configured")
        return found

    def holding(self, node: str) -> tuple[str, ...]:
        """The quarantines a reported copy on ``node`` may be found in: its short and long ones
        and the policy's high-risk ones (docs/operations.md); anywhere else it is not ours."""
        settings = self.settings.node(node)
        if settings is None:
            raise PermanentFailure(f"node {node!r} is no longer configured")
        return (settings.short_quarantine, settings.long_quarantine, *self.settings.policy.high_risk_quarantines)

    def release_url(self, recipient: Recipient) -> str:
        """The recipient's link; derived from the stored nonce, never stored itself."""
        token = links.release_token(self.settings.app.secret_key, recipient.token_nonce)
        return f"{self.settings.app.public_url.rstrip('/')}/release/{token}"


def end_transaction(session: Session) -> None:
    """Commit before a network call, so no row lock, SQLite write lock or pooled
    connection is held while the gateway or SMTP server takes its time."""
    session.commit()


def call_gateway(fn: Callable[..., Any], *args: Any) -> Any:
    """Call the gateway; an outage becomes :class:`RetryLater` (the worker backs off)."""
    try:
        return fn(*args)
    except GatewayError as exc:
        raise RetryLater(f"gateway: {exc}") from exc
