"""The service's settings: frozen, typed dataclasses, one per TOML section, and ConfigError.

Defaults live here, in code; :mod:`release.config.loading` fills them from a file and the
environment, :mod:`release.config.validation` checks them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# Languages the service has pages and mails in.
LOCALES = ("en", "sv", "de")


class ConfigError(ValueError):
    """A configuration value is missing or invalid; ``key`` names it (``section.key``).

    ``source`` says where the value came from (the file's path, or the ``RELEASE_*``
    variable), so the operator knows which of the two to edit.
    """

    def __init__(self, key: str, message: str, *, source: str | None = None) -> None:
        if source is None:
            text = f"configuration key {key}: {message}"
        else:
            text = f"{source}: {message}" if source == key else f"{source}: {key}: {message}"
        super().__init__(text)
        self.key = key
        self.message = message
        self.source = source


@dataclass(frozen=True)
class AppSettings:
    public_url: str = "http://127.0.0.1:5000"
    secret_key: str = ""
    demo: bool = False
    # Number of reverse proxies whose X-Forwarded-* headers are trusted (0: none).
    trusted_proxies: int = 0
    max_comment_length: int = 2000


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = ""


@dataclass(frozen=True)
class LinksSettings:
    keys: tuple[str, ...] = ()
    clock_skew_seconds: int = 300


@dataclass(frozen=True)
class CaptchaSettings:
    provider: str = "recaptcha"
    site_key: str = ""
    secret: str = ""
    verify_url: str = ""
    min_score: float = 0.5
    timeout_seconds: float = 10.0
    # ALTCHA proof-of-work difficulty (upper bound of the secret number).
    altcha_max_number: int = 100_000


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "localhost"
    port: int = 25
    security: str = "starttls"
    username: str = ""
    password: str = dataclasses.field(default="", repr=False)
    sender: str = "Quarantine release <postmaster@localhost>"
    timeout_seconds: float = 30.0
    verify_tls: bool = True


@dataclass(frozen=True)
class RetentionSettings:
    short_hours: int = 24
    long_days: int = 7
    # How long the service keeps its own records (reports, IP addresses, comments).
    record_days: int = 90
    # How often the worker enforces retention (deletes expired copies, purges records).
    enforce_every_minutes: int = 15


@dataclass(frozen=True)
class LimitsSettings:
    # Flask-Limiter storage: "memory://" (per process) or "redis://host:6379/0" (shared).
    storage_url: str = "memory://"
    reports_per_ip_per_hour: int = 20
    reports_per_message_per_hour: int = 10
    notifications_per_recipient_per_day: int = 20
    logins_per_ip_per_minute: int = 10


@dataclass(frozen=True)
class AdminSettings:
    # Trust an authenticated user name set by a reverse proxy (SSO); off when empty.
    trusted_user_header: str = ""
    # Only from these proxy addresses (exact IPs); the header is ignored from anyone else.
    trusted_proxy_addresses: tuple[str, ...] = ()
    session_hours: int = 12


@dataclass(frozen=True)
class PolicySettings:
    # A copy scoring above this needs an admin's approval to be released (None: no limit).
    max_spam_score: float | None = None
    # Copies found in these quarantines (any node) need an admin's approval; locate also
    # looks for reported copies there (docs/operations.md).
    high_risk_quarantines: tuple[str, ...] = ()
    # Bearer keys the gateway presents to GET /gateway/v1/allowed (empty: endpoint off).
    allowlist_keys: tuple[str, ...] = dataclasses.field(default=(), repr=False)


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 8
    # Longer than the slowest job (an SMTP batch can take ~3 min before it times out), so a
    # lease never runs out under a job that is still working.
    lease_seconds: int = 300
    max_attempts: int = 15
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 900.0
    # Poll interval where no wake-up channel exists (SQLite across processes): a report
    # waits for at most this long before the worker sees it. 0.1 s costs an idle worker
    # process a few % of one core (one claim transaction per poll); see bench/README.md.
    idle_poll_seconds: float = 0.1


@dataclass(frozen=True)
class I18nSettings:
    # Language of pages when the browser asks for none we have, and of mails by default.
    default_locale: str = "en"
    # Mail language per recipient domain ("example.se" = "sv"); subdomains inherit.
    domain_locales: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BrandingSettings:
    organisation_name: str = ""
    # An https URL, or a path on this service (e.g. /static/logo.svg).
    logo_url: str = ""
    primary_color: str = "#0d6efd"
    # Where people get help: an email address or an http(s) URL.
    support_contact: str = ""
    footer_text: str = ""
    # Folder whose templates/mail/* override the built-in mails (default: the instance folder).
    template_dir: str = ""


@dataclass(frozen=True)
class MetricsSettings:
    # /metrics is off (404) unless a bearer token or allowed addresses are set; both: both needed.
    token: str = dataclasses.field(default="", repr=False)
    allowed_ips: tuple[str, ...] = ()  # client addresses or networks ("10.0.0.0/8")


@dataclass(frozen=True)
class ApiSettings:
    # Bearer keys for /api/v1's admin endpoints: a random key, or "sha256:<hex>" of one (so the
    # file need not hold it). No keys: the admin endpoints answer 401 to everyone.
    keys: tuple[str, ...] = dataclasses.field(default=(), repr=False)


@dataclass(frozen=True)
class PreviewSettings:
    # The release page shows the held message safely (docs/preview.md); nodes can opt out.
    enabled: bool = True
    # A larger message shows its headers only; no more than this is read from a gateway.
    max_bytes: int = 2_000_000
    # Parsing and sanitising one message stops here and says "could not display".
    parse_seconds: float = 2.0
    # Attachments of harmless types can be downloaded; executables and archives never.
    allow_downloads: bool = False
    # How long the preview frame's signed address works.
    frame_minutes: int = 10


@dataclass(frozen=True)
class LoggingSettings:
    # "text" (human lines) or "json" (one object a line, for log shippers).
    format: str = "text"


# Gateways the service speaks to (DESIGN 2.6); a node without ``type`` is halon5. An rspamd
# node has no quarantine API: Rspamd pushes the rejected message here and the service keeps it.
NODE_TYPES = ("halon5", "halon6", "rspamd")
# How the service reaches an rspamd node's re-injection relay (as smtp.security).
RELAY_SECURITIES = ("none", "starttls", "tls")
# Where a halon6 node's senders learn of the link: the reject text, or a report mail the
# service sends after the node accepted and held the message (docs/halon/README.md).
SENDER_NOTICES = ("reject", "ndr")
DEFAULT_QUARANTINES = {
    "halon5": ("mailquarantine:1", "mailquarantine:2"),
    "halon6": ("qid=1day", "qid=7days"),
    # The service's own retention classes for the copies it stores (release/core/stored.py).
    "rspamd": ("short", "long"),
}


@dataclass(frozen=True)
class NodeSettings:
    name: str
    api_url: str = ""  # Halon nodes only
    type: str = "halon5"
    # halon5: HTTP Basic to the VM's API.
    username: str = ""
    password: str = dataclasses.field(default="", repr=False)
    # halon6: the halon-api key (sent as X-API-Key) and the node's version ("6.N").
    api_key: str = dataclasses.field(default="", repr=False)
    halon_version: str = ""
    verify_tls: bool = True
    ca_file: str = ""
    # halon5: "mailquarantine:N"; halon6: a metadata marker "key=value" (empty: the type's default).
    short_quarantine: str = ""
    long_quarantine: str = ""
    timeout_seconds: float = 10.0
    sender_notice: str = "reject"
    # rspamd: the password Rspamd's metadata_exporter presents (HTTP Basic, user = node name).
    push_password: str = dataclasses.field(default="", repr=False)
    # rspamd: where a released copy is re-injected over SMTP (a listener that skips the filter).
    relay_host: str = ""
    relay_port: int = 25
    relay_security: str = "none"
    # rspamd: optional controller for learn-ham on release (empty: no learning).
    controller_url: str = ""
    controller_password: str = dataclasses.field(default="", repr=False)
    # rspamd: a pushed message above this is refused (413) and never stored.
    max_message_bytes: int = 25 * 1024 * 1024
    # The recipient's preview of this node's messages (off: the page says it is switched off).
    preview: bool = True

    def __post_init__(self) -> None:
        short, long = DEFAULT_QUARANTINES.get(self.type, ("", ""))
        # Frozen: defaults that depend on the type are filled in once, here.
        object.__setattr__(self, "short_quarantine", self.short_quarantine or short)
        object.__setattr__(self, "long_quarantine", self.long_quarantine or long)

    @property
    def secret(self) -> str:
        """The credential this node's requests carry (kept out of logs and traces)."""
        if self.type == "rspamd":
            return self.push_password
        return self.api_key if self.type == "halon6" else self.password


@dataclass(frozen=True)
class Settings:
    app: AppSettings = field(default_factory=AppSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    links: LinksSettings = field(default_factory=LinksSettings)
    captcha: CaptchaSettings = field(default_factory=CaptchaSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    i18n: I18nSettings = field(default_factory=I18nSettings)
    branding: BrandingSettings = field(default_factory=BrandingSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    preview: PreviewSettings = field(default_factory=PreviewSettings)
    nodes: tuple[NodeSettings, ...] = ()

    def node(self, name: str) -> NodeSettings | None:
        """The configured node called ``name``, or None."""
        return next((n for n in self.nodes if n.name == name), None)


SECTIONS: dict[str, type] = {
    "app": AppSettings,
    "database": DatabaseSettings,
    "links": LinksSettings,
    "captcha": CaptchaSettings,
    "smtp": SmtpSettings,
    "retention": RetentionSettings,
    "worker": WorkerSettings,
    "limits": LimitsSettings,
    "admin": AdminSettings,
    "policy": PolicySettings,
    "i18n": I18nSettings,
    "branding": BrandingSettings,
    "metrics": MetricsSettings,
    "api": ApiSettings,
    "logging": LoggingSettings,
    "preview": PreviewSettings,
}


def replace(settings: Settings, **sections: Any) -> Settings:
    """Return a copy of ``settings`` with whole sections replaced (handy in tests)."""
    return dataclasses.replace(settings, **sections)
