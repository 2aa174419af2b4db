"""Load the service's configuration from one TOML file plus environment overrides.

The result is a frozen, typed :class:`Settings` (``settings``), read by ``loading`` and
checked by ``validation``. Every problem raises :class:`ConfigError` naming the offending
key, so an operator sees at start-up what to fix.
"""

from release.config.loading import apply_env_overrides, load_settings, settings_from_mapping
from release.config.settings import (
    LOCALES,
    SECTIONS,
    AdminSettings,
    ApiSettings,
    AppSettings,
    BrandingSettings,
    CaptchaSettings,
    ConfigError,
    DatabaseSettings,
    I18nSettings,
    LimitsSettings,
    LinksSettings,
    LoggingSettings,
    MetricsSettings,
    NodeSettings,
    PolicySettings,
    RetentionSettings,
    Settings,
    SmtpSettings,
    WorkerSettings,
    replace,
)
from release.config.validation import validate

__all__ = [
    "LOCALES",
    "SECTIONS",
    "AdminSettings",
    "ApiSettings",
    "AppSettings",
    "BrandingSettings",
    "CaptchaSettings",
    "ConfigError",
    "DatabaseSettings",
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
    "apply_env_overrides",
    "load_settings",
    "replace",
    "settings_from_mapping",
    "validate",
]
