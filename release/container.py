"""The long-lived collaborators of one process, built once from the settings: the one place
that knows which implementation backs which interface, and every kind of job."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from release.captcha import Captcha, ReplayGuard, make_captcha
from release.captcha.replay import RedisReplayGuard
from release.config import Settings
from release.core.choices import Choices
from release.core.context import Context
from release.core.held import HeldNotices
from release.core.learning import HamLearning
from release.core.notify import Notifier
from release.core.previews import Previews
from release.core.purge import Enforcer, EnforcingWorker
from release.core.release import Releases
from release.core.reports import Reports
from release.core.summaries import ReportSummaries
from release.db.engine import Database
from release.db.replay import DatabaseReplayGuard
from release.db.states import JobKind, RecipientState, ReportState
from release.gateway import Gateway, gateway_for
from release.jobs.registry import JobRegistry, JobType, Target
from release.jobs.wake import LocalWaker, PostgresWaker, Waker, wake_on_commit
from release.jobs.worker import Worker
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
    ctx: Context
    steps: Steps
    job_types: JobRegistry
    captcha: Captcha
    mailer: Mailer
    gateways: dict[str, Gateway]
    waker: LocalWaker
    summaries: ReportSummaries
    previews: Previews

    def build_worker(self, *, in_process: bool) -> Worker:
        """A worker for this process; ``in_process``: web requests share the process."""
        waker: Waker = self.waker
        polling = False
        if self.db.is_postgres:
            waker = PostgresWaker(self.db.url.set(drivername="postgresql").render_as_string(hide_password=False))
        elif not in_process:
            polling = True  # SQLite across processes: nobody can wake us, poll briefly
        return EnforcingWorker(self.db, self.job_types, self.settings.worker, waker, polling=polling)


@dataclass(frozen=True)
class Steps:
    """The domain steps, sharing one :class:`Context`."""

    reports: Reports
    notifier: Notifier
    releases: Releases
    choices: Choices
    enforcer: Enforcer


def build_steps(ctx: Context) -> Steps:
    """The domain steps over ``ctx``."""
    releases = Releases(ctx)
    return Steps(Reports(ctx), Notifier(ctx), releases, Choices(ctx, releases), Enforcer(ctx.settings, ctx.gateways))


def job_types(steps: Steps) -> JobRegistry:
    """Every kind of job: what runs it, what a row shows when it gives up, and its rank."""
    reports, notifier, releases, choices, enforcer = (
        steps.reports, steps.notifier, steps.releases, steps.choices, steps.enforcer
    )  # fmt: skip
    failed = RecipientState.FAILED
    held = HeldNotices(reports.ctx)  # halon6 nodes in "ndr" mode (release/core/held.py)
    learning = HamLearning(reports.ctx)  # rspamd nodes with a controller
    return JobRegistry(
        [
            JobType(JobKind.LOCATE, reports.locate, reports.on_dead, "find and hold the copies", Target.REPORT,
                    run_many=reports.locate_many, retry_from=(ReportState.FAILED, ReportState.PENDING)),
            JobType(JobKind.NOTIFY, notifier.notify, notifier.on_dead, "mail the recipient", Target.COPY,
                    priority=1, run_many=notifier.notify_many, retry_from=(failed, RecipientState.NOTIFY_PENDING)),
            JobType(JobKind.RELEASE, releases.release, releases.on_dead, "release to delivery", Target.COPY,
                    priority=0, retry_from=(failed, RecipientState.RELEASE_REQUESTED)),
            JobType(JobKind.DELETE, enforcer.delete_copy, None, "delete on an admin's request", Target.COPY),
            JobType(JobKind.ENFORCE, enforcer.run_job, enforcer.on_dead, "enforce retention", Target.NOTHING),
            JobType(JobKind.DISCARD, choices.discard, choices.discard_gave_up, "delete on the recipient's request",
                    Target.COPY),
            JobType(JobKind.OUTCOME_MAIL, choices.outcome_mail, choices.outcome_mail_gave_up,
                    "mail the admins' decision", Target.COPY),
            JobType(JobKind.NDR, held.send, held.on_dead, "mail the sender a report", Target.NOTHING),
            JobType(JobKind.LEARN_HAM, learning.learn, learning.on_dead, "teach Rspamd the message is ham",
                    Target.COPY, priority=3),
        ]
    )  # fmt: skip


def default_database_url() -> str:
    """SQLite in the instance folder: the embedded default for one machine."""
    path = INSTANCE / "release.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def build_services(settings: Settings, *, mailer: Mailer | None = None) -> Services:
    """Wire the real collaborators for ``settings``."""
    db = Database(settings.database.url or default_database_url())
    # Timing and error counts are taken here, once, around every gateway and SMTP call.
    gateways: dict[str, Gateway] = {node.name: InstrumentedGateway(gateway_for(node, db=db)) for node in settings.nodes}
    mailer = InstrumentedMailer(mailer or SmtpMailer(settings.smtp))
    captcha = make_captcha(settings.captcha, fallback_secret=settings.app.secret_key, replay=replay_guard(settings, db))
    waker = LocalWaker()
    wake_on_commit(db, waker)
    ctx = Context(settings, gateways, mailer, mail_templates(settings))
    steps = build_steps(ctx)
    return Services(
        settings, db, ctx, steps, job_types(steps), captcha, mailer, gateways, waker, ReportSummaries(db),
        Previews(settings, gateways),
    )  # fmt: skip


def replay_guard(settings: Settings, db: Database) -> ReplayGuard:
    """Where used CAPTCHA solutions are remembered, seen by every web process: Redis when the
    rate limits use it (the database if Redis fails), else the database."""
    shared = DatabaseReplayGuard(db)
    if settings.limits.storage_url.startswith(("redis://", "rediss://")):
        return RedisReplayGuard.from_url(settings.limits.storage_url, fallback=shared)
    return shared


def mail_templates(settings: Settings) -> MailTemplates:
    """The mail environments: branded, in every language, instance templates first."""
    override = settings.branding.template_dir or INSTANCE / "templates"
    brand = brand_from(settings.branding, settings.app.public_url)
    return MailTemplates(settings.i18n, override_dir=override, brand=brand)


def services() -> Services:
    """The current app's services (inside a request or app context)."""
    found: Services = current_app.extensions["release"]
    return found
