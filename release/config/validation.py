"""Cross-field checks of :class:`Settings`; outside the demo, refuse placeholder secrets."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from release.config.settings import (
    LOCALES,
    NODE_TYPES,
    RELAY_SECURITIES,
    SENDER_NOTICES,
    ApiSettings,
    BrandingSettings,
    CaptchaSettings,
    ConfigError,
    I18nSettings,
    MetricsSettings,
    NodeSettings,
    PolicySettings,
    PreviewSettings,
    Settings,
)

# Matched with fullmatch: "$" would let a trailing newline through.
NODE_NAME = re.compile(r"[a-z0-9-]+")
QUARANTINE_ID = re.compile(r"mailquarantine:[0-9]+")
# A halon6 marker: metadata key=value on held copies (Halon's own keys start with "_").
QUARANTINE_MARKER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}=[A-Za-z0-9_.:-]{1,64}")
HALON6_VERSION = re.compile(r"6\.[0-9]{1,3}")
# What an HTTP header (Basic auth, X-API-Key) can carry: printable ASCII, no spaces at the ends.
CREDENTIAL = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
MAX_NODE_TIMEOUT = 300.0
CAPTCHA_PROVIDERS = ("recaptcha", "hcaptcha", "turnstile", "altcha")
SMTP_SECURITY = ("none", "starttls", "tls")
LOG_FORMATS = ("text", "json")
MIN_SECRET_LENGTH = 16
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
    if not 0 <= settings.links.clock_skew_seconds <= 3600:
        raise ConfigError("links.clock_skew_seconds", "must be between 0 and 3600 seconds")
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
    _require_parsable_urls(settings)
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
    _validate_preview(settings.preview)
    if settings.logging.format not in LOG_FORMATS:
        raise ConfigError("logging.format", f"must be one of {', '.join(LOG_FORMATS)}")


def _require_parsable_urls(settings: Settings) -> None:
    """URLs the service only parses when it connects, parsed now: a bad port or a missing
    colon is a line at start-up, not a traceback from the engine (the URL is never echoed)."""
    if settings.database.url:
        try:
            _ = make_url(settings.database.url).port
        except (ArgumentError, ValueError) as exc:
            reason = "no driver://... form" if isinstance(exc, ArgumentError) else "the port is not a number"
            raise ConfigError("database.url", f"is not a database URL ({reason})") from None
    try:
        _ = urlsplit(settings.limits.storage_url).port
    except ValueError:
        raise ConfigError("limits.storage_url", "is not a valid URL (the port is not a number)") from None


def _validate_policy(policy: PolicySettings, *, demo: bool) -> None:
    for i, quarantine in enumerate(policy.high_risk_quarantines):
        if not (QUARANTINE_ID.fullmatch(quarantine) or QUARANTINE_MARKER.fullmatch(quarantine)):
            raise ConfigError(
                f"policy.high_risk_quarantines[{i}]", "must look like mailquarantine:<number> or a marker key=value"
            )
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


def _is_placeholder(secret: str) -> bool:
    return secret.strip().lower() in PLACEHOLDER_SECRETS or len(secret) < MIN_SECRET_LENGTH


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


def _validate_preview(preview: PreviewSettings) -> None:
    if not 64 * 1024 <= preview.max_bytes <= 25 * 1024 * 1024:
        raise ConfigError("preview.max_bytes", "must be between 65536 and 26214400 bytes")
    if not 0.1 <= preview.parse_seconds <= 30:  # also refuses nan
        raise ConfigError("preview.parse_seconds", "must be between 0.1 and 30 seconds")
    if not 1 <= preview.frame_minutes <= 24 * 60:
        raise ConfigError("preview.frame_minutes", "must be between 1 and 1440 minutes")


def _validate_nodes(nodes: tuple[NodeSettings, ...], *, demo: bool) -> None:
    seen: set[str] = set()
    for i, node in enumerate(nodes):
        key = f"nodes[{i}]"
        if not NODE_NAME.fullmatch(node.name):
            raise ConfigError(f"{key}.name", "must match [a-z0-9-]+")
        if node.name in seen:
            raise ConfigError(f"{key}.name", f"duplicate node name {node.name!r}")
        seen.add(node.name)
        if node.type not in NODE_TYPES:
            raise ConfigError(f"{key}.type", f"must be one of {', '.join(NODE_TYPES)}")
        if node.type == "rspamd":
            _validate_rspamd(key, node, demo=demo)
        elif not _is_http_url(node.api_url):
            raise ConfigError(f"{key}.api_url", "must be an absolute http(s) URL")
        elif node.type == "halon6":
            _validate_halon6(key, node, demo=demo)
        else:
            _validate_halon5(key, node, demo=demo)
        if node.type != "rspamd":
            _refuse_keys(key, node, RSPAMD_ONLY, "an rspamd key; remove it from this Halon node")
        if node.short_quarantine == node.long_quarantine:
            raise ConfigError(f"{key}.long_quarantine", "must differ from short_quarantine")
        if node.ca_file and not Path(node.ca_file).is_file():
            raise ConfigError(f"{key}.ca_file", f"file {node.ca_file} does not exist")
        if not 0 < node.timeout_seconds <= MAX_NODE_TIMEOUT:  # also refuses nan and inf
            raise ConfigError(
                f"{key}.timeout_seconds", f"must be a number of seconds above 0 and at most {MAX_NODE_TIMEOUT:g}"
            )
        for attr in ("username", "password", "api_key", "push_password", "controller_password"):
            value = getattr(node, attr)
            if value and not CREDENTIAL.fullmatch(value):
                # A header cannot carry it; requests would fail on every call, quoting the value.
                raise ConfigError(
                    f"{key}.{attr}", "must be printable ASCII without spaces or line breaks at either end"
                )


# Keys only an rspamd node has, with the value they default to.
RSPAMD_ONLY = {"push_password": "", "relay_host": "", "relay_port": 25, "relay_security": "none",
               "controller_url": "", "controller_password": "", "max_message_bytes": 25 * 1024 * 1024}  # fmt: skip
# verify_tls and ca_file apply to an rspamd node's relay (TLS) and controller (https).
HALON_ONLY = {"api_url": "", "username": "", "password": "", "api_key": "", "halon_version": "",
              "sender_notice": "reject"}  # fmt: skip
MAX_PUSH_BYTES = 256 * 1024 * 1024
RELAY_HOST = re.compile(r"[A-Za-z0-9._:-]{1,253}")


def _refuse_keys(key: str, node: NodeSettings, defaults: Mapping[str, object], why: str) -> None:
    for attr, default in defaults.items():
        if getattr(node, attr) != default:
            raise ConfigError(f"{key}.{attr}", f"is {why}")


def _validate_rspamd(key: str, node: NodeSettings, *, demo: bool) -> None:
    _refuse_keys(
        key, node, HALON_ONLY, 'a Halon key; an rspamd node pushes its copies to the service (type = "rspamd")'
    )
    if (node.short_quarantine, node.long_quarantine) != ("short", "long"):
        raise ConfigError(f"{key}.short_quarantine", "is not set on an rspamd node: the service keeps its copies")
    if not demo:
        _require_secret(f"{key}.push_password", node.push_password)
    if not RELAY_HOST.fullmatch(node.relay_host):
        raise ConfigError(f"{key}.relay_host", "is required: the SMTP listener released copies are re-injected into")
    if not 0 < node.relay_port < 65536:
        raise ConfigError(f"{key}.relay_port", "must be a TCP port (1-65535)")
    if node.relay_security not in RELAY_SECURITIES:
        raise ConfigError(f"{key}.relay_security", f"must be one of {', '.join(RELAY_SECURITIES)}")
    if node.controller_url:
        if not _is_http_url(node.controller_url):
            raise ConfigError(f"{key}.controller_url", "must be an absolute http(s) URL (Rspamd's controller)")
        if not demo and not node.controller_password:
            raise ConfigError(f"{key}.controller_password", "is required with controller_url (learn-ham)")
    elif node.controller_password:
        raise ConfigError(f"{key}.controller_url", "is required with controller_password")
    if not 0 < node.max_message_bytes <= MAX_PUSH_BYTES:
        raise ConfigError(f"{key}.max_message_bytes", f"must be a size in bytes above 0 and at most {MAX_PUSH_BYTES}")


def _validate_halon5(key: str, node: NodeSettings, *, demo: bool) -> None:
    for attr in ("short_quarantine", "long_quarantine"):
        if not QUARANTINE_ID.fullmatch(getattr(node, attr)):
            raise ConfigError(f"{key}.{attr}", "must look like mailquarantine:<number> on a halon5 node")
    if not demo and not node.password:
        raise ConfigError(f"{key}.password", "is required (HTTP Basic auth to the gateway API)")
    for attr in ("api_key", "halon_version"):
        if getattr(node, attr):
            raise ConfigError(f"{key}.{attr}", 'is a halon6 key; add type = "halon6" to this node or remove it')
    if node.sender_notice != "reject":
        raise ConfigError(f"{key}.sender_notice", 'only "reject" on halon5 (its copies survive Reject())')


def _validate_halon6(key: str, node: NodeSettings, *, demo: bool) -> None:
    if not HALON6_VERSION.fullmatch(node.halon_version):
        raise ConfigError(f"{key}.halon_version", 'must be the node\'s version as "6.N", for example "6.10"')
    markers = []
    for attr in ("short_quarantine", "long_quarantine"):
        marker = getattr(node, attr)
        if not QUARANTINE_MARKER.fullmatch(marker):
            raise ConfigError(
                f"{key}.{attr}", 'must be a metadata marker key=value, for example "qid=1day" (key not starting with _)'
            )
        markers.append(marker.partition("=")[0])
    if markers[0] != markers[1]:
        # Extending rewrites the one key; with two keys the short marker (and Halon's
        # cron delete by it) would stay on an extended copy.
        raise ConfigError(f"{key}.long_quarantine", "must use the same metadata key as short_quarantine")
    if not demo:
        _require_secret(f"{key}.api_key", node.api_key)
    if node.username or node.password:
        raise ConfigError(f"{key}.password", "halon6 nodes authenticate with api_key; remove username/password")
    if node.sender_notice not in SENDER_NOTICES:
        raise ConfigError(f"{key}.sender_notice", f"must be one of {', '.join(SENDER_NOTICES)}")


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
