"""The long-lived collaborators of one process, built once from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy.orm import Session

from release.captcha import Captcha, make_captcha
from release.config import Settings
from release.core.choices import Choices
from release.core.flow import Flow
from release.core.purge import Enforcer, EnforcingWorker
from release.core.summaries import ReportSummaries
from release.db.engine import Database
from release.gateway import Gateway, gateway_for
from release.jobs.worker import LocalWaker, PostgresWaker, Waker, Worker, wake_on_commit
from release.mail.brand import brand_from
from release.mail.sending import Mailer, SmtpMailer
from release.mail.templates import MailTemplates
from release.ops.metrics import InstrumentedGateway, InstrumentedMailer
from release.paths import INSTANCE


@dataclass
class Services:
    """Everything views, CLI commands and the worker share in one process."""

    settings: Settings
    db: Database
    flow: Flow
    captcha: Captcha
    mailer: Mailer
    gateways: dict[str, Gateway]
    waker: LocalWaker
    summaries: ReportSummaries

    def build_worker(self, *, in_process: bool) -> Worker:
        """A worker for this process; ``in_process``: web requests share the process."""
        waker: Waker = self.waker
        polling = False
        if self.db.is_postgres:
            waker = PostgresWaker(self.db.url.set(drivername="postgresql").render_as_string(hide_password=False))
        elif not in_process:
            polling = True  # SQLite across processes: nobody can wake us, poll briefly
        flow, enforcer, choices = self.flow, Enforcer(self.settings, self.gateways), Choices(self.flow)
        handlers = {"locate": flow.locate, "notify": flow.notify, "release": flow.release,
                    "delete": enforcer.delete_copy, "enforce": enforcer.run_job,
                    "discard": choices.discard, "outcome_mail": choices.outcome_mail}  # fmt: skip

        def on_dead(session: Session, kind: str, ref_id: int, error: str) -> None:
            if kind in ("discard", "outcome_mail"):
                choices.on_dead(session, kind, ref_id, error)
                return
            (enforcer.on_dead if kind in ("delete", "enforce") else flow.on_dead)(session, kind, ref_id, error)

        batch_handlers = {"locate": flow.locate_many, "notify": flow.notify_many}
        return EnforcingWorker(
            self.db, handlers, on_dead, self.settings.worker, waker, polling=polling, batch_handlers=batch_handlers
        )


def default_database_url() -> str:
    """SQLite in the instance folder: the embedded default for one machine."""
    path = INSTANCE / "release.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def build_services(settings: Settings, *, mailer: Mailer | None = None) -> Services:
    """Wire the real collaborators for ``settings``."""
    db = Database(settings.database.url or default_database_url())
    # Timing and error counts are taken here, once, around every gateway and SMTP call.
    gateways: dict[str, Gateway] = {node.name: InstrumentedGateway(gateway_for(node)) for node in settings.nodes}
    mailer = InstrumentedMailer(mailer or SmtpMailer(settings.smtp))
    captcha = make_captcha(settings.captcha, fallback_secret=settings.app.secret_key)
    waker = LocalWaker()
    wake_on_commit(db, waker)
    flow = Flow(settings, gateways, mailer, mail_templates(settings))
    return Services(settings, db, flow, captcha, mailer, gateways, waker, ReportSummaries(db))


def mail_templates(settings: Settings) -> MailTemplates:
    """The mail environments: branded, in every language, instance templates first."""
    override = settings.branding.template_dir or INSTANCE / "templates"
    brand = brand_from(settings.branding, settings.app.public_url)
    return MailTemplates(settings.i18n, override_dir=override, brand=brand)


def services() -> Services:
    """The current app's services (inside a request or app context)."""
    found: Services = current_app.extensions["release"]
    return found
