"""Load the service's configuration from one TOML file plus environment overrides.

The result is a frozen, typed :class:`Settings`. Every problem raises :class:`ConfigError`
naming the offending key, so an operator sees at start-up what to fix.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ENV_PREFIX = "RELEASE_"
NODE_NAME = re.compile(r"^[a-z0-9-]+$")
QUARANTINE_ID = re.compile(r"^mailquarantine:\d+$")
CAPTCHA_PROVIDERS = ("recaptcha", "hcaptcha", "turnstile", "altcha")
SMTP_SECURITY = ("none", "starttls", "tls")
DELETE_SHAPES = ("action", "task")
LOG_FORMATS = ("text", "json")
MIN_SECRET_LENGTH = 16
LOCALES = ("en", "sv", "de")
HEX_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}){1,2}")
DOMAIN = re.compile(r"(?=.{1,253}\Z)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
EMAIL = re.compile(r"[^@\s<>\"']{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}")
# Values that only ever appear in examples and docs; a production config must not use them.
PLACEHOLDER_SECRETS = frozenset(
    {
        "...",
        "change-me",
        "changeme",
        "secret",
        "password",
        "demo",
        "current-gateway-shared-key",
        "previous-key",
        "dev",
        "development",
    }
)


class ConfigError(ValueError):
    """A configuration value is missing or invalid; ``key`` names it (``section.key``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"configuration key {key}: {message}")
        self.key = key


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
class LoggingSettings:
    # "text" (human lines) or "json" (one object a line, for log shippers).
    format: str = "text"


@dataclass(frozen=True)
class NodeSettings:
    name: str
    api_url: str
    username: str = ""
    password: str = dataclasses.field(default="", repr=False)
    verify_tls: bool = True
    ca_file: str = ""
    short_quarantine: str = "mailquarantine:1"
    long_quarantine: str = "mailquarantine:2"
    timeout_seconds: float = 10.0
    # Shape of the delete request body: "action" (5.3-era) or "task" (later protos).
    delete_shape: str = "action"


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
}


def load_settings(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the TOML file at ``path`` (if any), apply ``RELEASE_*`` overrides, validate."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError("RELEASE_CONFIG", f"file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("RELEASE_CONFIG", f"{path} is not valid TOML: {exc}") from None
    return settings_from_mapping(apply_env_overrides(data, environ))


def apply_env_overrides(data: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Return a copy of ``data`` with ``RELEASE_<SECTION>__<KEY>`` variables applied.

    Nodes are addressed by name: ``RELEASE_NODES__MX1__PASSWORD`` sets the password of node
    ``mx1`` (so secrets can stay out of the file).
    """
    merged: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()}
    nodes = [dict(n) for n in data.get("nodes", []) if isinstance(n, Mapping)]
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if parts[0] == "nodes" and len(parts) == 3:
            node_name = parts[1].replace("_", "-")
            target = next((n for n in nodes if n.get("name") == node_name), None)
            if target is None:
                target = {"name": node_name}
                nodes.append(target)
            target[parts[2]] = value
        elif len(parts) == 2 and parts[0] in SECTIONS:
            merged.setdefault(parts[0], {})[parts[1]] = value
    if nodes:
        merged["nodes"] = nodes
    return merged


def settings_from_mapping(data: Mapping[str, Any]) -> Settings:
    """Build and validate :class:`Settings` from a parsed TOML-like mapping."""
    unknown = set(data) - set(SECTIONS) - {"nodes"}
    if unknown:
        raise ConfigError(sorted(unknown)[0], "unknown section")
    sections = {name: _build(cls, name, data.get(name, {})) for name, cls in SECTIONS.items()}
    raw_nodes = data.get("nodes", [])
    if not isinstance(raw_nodes, list):
        raise ConfigError("nodes", "must be an array of tables ([[nodes]])")
    nodes = tuple(_build(NodeSettings, f"nodes[{i}]", raw) for i, raw in enumerate(raw_nodes))
    settings = Settings(nodes=nodes, **sections)
    validate(settings)
    return settings


def _build(cls: type, prefix: str, raw: Any) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(prefix, "must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            raise ConfigError(f"{prefix}.{key}", "unknown key")
    values = {key: _coerce(f"{prefix}.{key}", hints[key], value) for key, value in raw.items()}
    try:
        return cls(**values)
    except TypeError:
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in values]
        raise ConfigError(f"{prefix}.{missing[0] if missing else '?'}", "is required") from None


def _coerce(key: str, hint: Any, value: Any) -> Any:
    """Convert a TOML or environment value to the field's type, or raise ConfigError."""
    if typing.get_origin(hint) is dict:
        return _coerce_table(key, value)
    if typing.get_origin(hint) is tuple:
        if isinstance(value, str):
            value = _parse_list(key, value)
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(key, "must be a list of strings")
        return tuple(value)
    if hint == (float | None):
        return None if value is None or value == "" else _coerce(key, float, value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            return value.lower() in {"1", "true", "yes", "on"}
        raise ConfigError(key, "must be true or false")
    if hint in (int, float):
        if isinstance(value, bool):
            raise ConfigError(key, f"must be a number, not {value!r}")
        try:
            return hint(value)
        except (TypeError, ValueError):
            raise ConfigError(key, f"must be a number, not {value!r}") from None
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(key, "must be a string")
        return value
    raise ConfigError(key, f"unsupported type {hint}")  # pragma: no cover - programming error


def _coerce_table(key: str, value: Any) -> dict[str, str]:
    """A string-to-string table (TOML inline table, or JSON object from the environment)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ConfigError(key, "must be a JSON object") from None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigError(key, "must be a table of strings")
    return dict(value)


def _parse_list(key: str, value: str) -> list[str]:
    if value.lstrip().startswith("["):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            raise ConfigError(key, "must be a JSON list or comma-separated") from None
        return list(parsed) if isinstance(parsed, list) else [parsed]
    return [part.strip() for part in value.split(",") if part.strip()]


def _is_placeholder(secret: str) -> bool:
    return secret.strip().lower() in PLACEHOLDER_SECRETS or len(secret) < MIN_SECRET_LENGTH


def validate(settings: Settings) -> None:
    """Check cross-field rules; secrets are strict unless this is the demo."""
    app = settings.app
    url = urlsplit(app.public_url)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ConfigError("app.public_url", "must be an absolute http(s) URL")
    if not app.secret_key:
        # The demo relaxes placeholder checks, not this: sessions, CSRF and tokens need a key.
        raise ConfigError("app.secret_key", "is required, in demo mode too (it signs sessions, CSRF and release links)")
    if not app.demo:
        _require_secret("app.secret_key", app.secret_key)
        if not settings.links.keys:
            raise ConfigError("links.keys", "at least one link key shared with the gateway is required")
        for i, key in enumerate(settings.links.keys):
            _require_secret(f"links.keys[{i}]", key)
        if not settings.nodes:
            raise ConfigError("nodes", "at least one gateway node ([[nodes]]) is required")
    _validate_captcha(settings.captcha, demo=app.demo)
    if settings.smtp.security not in SMTP_SECURITY:
        raise ConfigError("smtp.security", f"must be one of {', '.join(SMTP_SECURITY)}")
    if not 0 < settings.smtp.port < 65536:
        raise ConfigError("smtp.port", "must be a TCP port (1-65535)")
    retention = settings.retention
    if not 1 <= retention.short_hours <= 24 * 30:
        raise ConfigError("retention.short_hours", "must be between 1 and 720 hours")
    if not 1 <= retention.long_days <= 365:
        raise ConfigError("retention.long_days", "must be between 1 and 365 days")
    if retention.long_days * 24 <= retention.short_hours:
        raise ConfigError("retention.long_days", "long retention must be longer than short retention")
    if not 1 <= retention.record_days <= 3650:
        raise ConfigError("retention.record_days", "must be between 1 and 3650 days")
    if retention.record_days < retention.long_days:
        raise ConfigError("retention.record_days", "must be at least retention.long_days")
    if not 1 <= retention.enforce_every_minutes <= 24 * 60:
        raise ConfigError("retention.enforce_every_minutes", "must be between 1 and 1440")
    if urlsplit(settings.limits.storage_url).scheme not in ("memory", "redis", "rediss"):
        raise ConfigError("limits.storage_url", "must be memory:// or a redis:// URL")
    if not 1 <= app.max_comment_length <= 20000:
        raise ConfigError("app.max_comment_length", "must be between 1 and 20000")
    if settings.worker.concurrency < 1:
        raise ConfigError("worker.concurrency", "must be at least 1")
    _validate_nodes(settings.nodes, demo=app.demo)
    _validate_policy(settings.policy, demo=app.demo)
    _validate_i18n(settings.i18n)
    _validate_branding(settings.branding)
    _validate_metrics(settings.metrics, demo=app.demo)
    _validate_api_keys(settings.api, demo=app.demo)
    if settings.logging.format not in LOG_FORMATS:
        raise ConfigError("logging.format", f"must be one of {', '.join(LOG_FORMATS)}")


def _validate_policy(policy: PolicySettings, *, demo: bool) -> None:
    for i, quarantine in enumerate(policy.high_risk_quarantines):
        if not QUARANTINE_ID.match(quarantine):
            raise ConfigError(f"policy.high_risk_quarantines[{i}]", "must look like mailquarantine:<number>")
    if not demo:
        for i, key in enumerate(policy.allowlist_keys):
            _require_secret(f"policy.allowlist_keys[{i}]", key)


def _require_secret(key: str, value: str) -> None:
    if not value:
        raise ConfigError(key, "is required (set it in the config file or the environment)")
    if _is_placeholder(value):
        raise ConfigError(
            key,
            f"looks like a placeholder or demo value; use a random value of at least {MIN_SECRET_LENGTH} characters",
        )


def _validate_metrics(metrics: MetricsSettings, *, demo: bool) -> None:
    if metrics.token and not demo:
        _require_secret("metrics.token", metrics.token)
    for i, entry in enumerate(metrics.allowed_ips):
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(f"metrics.allowed_ips[{i}]", f"{entry!r} is not an IP address or network") from None


def _validate_api_keys(api: ApiSettings, *, demo: bool) -> None:
    for i, key in enumerate(api.keys):
        if key.startswith("sha256:"):
            if not re.fullmatch(r"[0-9a-f]{64}", key[len("sha256:") :]):
                raise ConfigError(f"api.keys[{i}]", "sha256: must be followed by 64 lower-case hex digits")
        elif not demo:
            _require_secret(f"api.keys[{i}]", key)


def _validate_captcha(captcha: CaptchaSettings, *, demo: bool) -> None:
    if captcha.provider not in CAPTCHA_PROVIDERS:
        raise ConfigError("captcha.provider", f"must be one of {', '.join(CAPTCHA_PROVIDERS)}")
    if captcha.provider != "altcha" and not demo:
        if not captcha.site_key:
            raise ConfigError("captcha.site_key", f"is required for {captcha.provider}")
        if not captcha.secret:
            raise ConfigError("captcha.secret", f"is required for {captcha.provider}")
    if captcha.verify_url and urlsplit(captcha.verify_url).scheme not in ("http", "https"):
        raise ConfigError("captcha.verify_url", "must be an http(s) URL")
    if not 0.0 <= captcha.min_score <= 1.0:
        raise ConfigError("captcha.min_score", "must be between 0.0 and 1.0")


def _validate_nodes(nodes: tuple[NodeSettings, ...], *, demo: bool) -> None:
    seen: set[str] = set()
    for i, node in enumerate(nodes):
        key = f"nodes[{i}]"
        if not NODE_NAME.match(node.name):
            raise ConfigError(f"{key}.name", "must match [a-z0-9-]+")
        if node.name in seen:
            raise ConfigError(f"{key}.name", f"duplicate node name {node.name!r}")
        seen.add(node.name)
        if urlsplit(node.api_url).scheme not in ("http", "https") or not urlsplit(node.api_url).netloc:
            raise ConfigError(f"{key}.api_url", "must be an absolute http(s) URL")
        for attr in ("short_quarantine", "long_quarantine"):
            if not QUARANTINE_ID.match(getattr(node, attr)):
                raise ConfigError(f"{key}.{attr}", "must look like mailquarantine:<number>")
        if node.short_quarantine == node.long_quarantine:
            raise ConfigError(f"{key}.long_quarantine", "must differ from short_quarantine")
        if node.delete_shape not in DELETE_SHAPES:
            raise ConfigError(f"{key}.delete_shape", f"must be one of {', '.join(DELETE_SHAPES)}")
        if node.ca_file and not Path(node.ca_file).is_file():
            raise ConfigError(f"{key}.ca_file", f"file {node.ca_file} does not exist")
        if not demo and not node.password:
            raise ConfigError(f"{key}.password", "is required (HTTP Basic auth to the gateway API)")
        if node.timeout_seconds <= 0:
            raise ConfigError(f"{key}.timeout_seconds", "must be positive")


def _validate_i18n(i18n: I18nSettings) -> None:
    if i18n.default_locale not in LOCALES:
        raise ConfigError("i18n.default_locale", f"must be one of {', '.join(LOCALES)}")
    for domain, locale in i18n.domain_locales.items():
        if not DOMAIN.fullmatch(domain):
            raise ConfigError(f"i18n.domain_locales.{domain}", "must be a domain name like example.se")
        if locale not in LOCALES:
            raise ConfigError(f"i18n.domain_locales.{domain}", f"must be one of {', '.join(LOCALES)}")


def _validate_branding(branding: BrandingSettings) -> None:
    if not HEX_COLOR.fullmatch(branding.primary_color):
        raise ConfigError("branding.primary_color", "must be a hex colour like #0d6efd")
    for name, limit in (("organisation_name", 100), ("footer_text", 500), ("support_contact", 254)):
        value = getattr(branding, name)
        if len(value) > limit or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ConfigError(f"branding.{name}", f"must be one line of at most {limit} characters")
    logo = branding.logo_url
    if logo and not (_is_http_url(logo) or (logo.startswith("/") and not logo.startswith("//"))):
        raise ConfigError("branding.logo_url", "must be an http(s) URL or a path starting with /")
    contact = branding.support_contact
    if contact and not (_is_http_url(contact) or EMAIL.fullmatch(contact)):
        raise ConfigError("branding.support_contact", "must be an email address or an http(s) URL")
    if branding.template_dir and not Path(branding.template_dir).is_dir():
        raise ConfigError("branding.template_dir", f"folder {branding.template_dir} does not exist")


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not any(c in value for c in " \"'<>")


def replace(settings: Settings, **sections: Any) -> Settings:
    """Return a copy of ``settings`` with whole sections replaced (handy in tests)."""
    return dataclasses.replace(settings, **sections)


__all__ = [
    "ApiSettings",
    "AppSettings",
    "CaptchaSettings",
    "ConfigError",
    "DatabaseSettings",
    "AdminSettings",
    "BrandingSettings",
    "I18nSettings",
    "LimitsSettings",
    "LinksSettings",
    "LoggingSettings",
    "MetricsSettings",
    "NodeSettings",
    "PolicySettings",
    "RetentionSettings",
    "Settings",
    "SmtpSettings",
    "WorkerSettings",
    "load_settings",
    "settings_from_mapping",
]
