"""sender-fp-release: rescue email a spam filter wrongly rejected.

``create_app(settings)`` wires configuration, database, gateway clients, CAPTCHA, mailer,
blueprints and CLI. Nothing is built at import time.
"""

from __future__ import annotations

import os

from flask import Flask
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from release.config import ConfigError, Settings, load_settings
from release.container import Services, build_services
from release.paths import INSTANCE, PROJECT_ROOT, STATIC, TEMPLATES
from release.web.jsonbody import JsonProvider

DEFAULT_CONFIG = "instance/config.toml"


def config_path_from_env() -> str | None:
    """The config file to read: RELEASE_CONFIG, else instance/config.toml if it exists."""
    path = os.environ.get("RELEASE_CONFIG")
    if path:
        return path
    default = PROJECT_ROOT / DEFAULT_CONFIG
    return str(default) if default.is_file() else None


def settings_from_env() -> Settings:
    """The settings of the config file :func:`config_path_from_env` finds, with ``RELEASE_*``
    overrides; raises :class:`ConfigError` when there is none or it is wrong."""
    path = config_path_from_env()
    if path is None:
        raise ConfigError(
            "RELEASE_CONFIG",
            f"no configuration found (set RELEASE_CONFIG or create {DEFAULT_CONFIG}); "
            "`python app.py` runs the demo without one",
        )
    return load_settings(path)


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> Flask:
    """Build the Flask application for ``settings`` (read from file/env when not given)."""
    if settings is None:
        settings = settings_from_env()
    app = Flask(
        __name__,
        template_folder=str(TEMPLATES),
        static_folder=str(STATIC),
        instance_path=str(INSTANCE),
    )
    app.json = JsonProvider(app)  # JSON nested too deep to parse is a 400 (web/jsonbody.py)
    secure = settings.app.public_url.startswith("https://")
    app.config.update(
        SECRET_KEY=settings.app.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        SESSION_COOKIE_NAME="__Host-session" if secure else "session",
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session; pages stay open for long
        MAX_CONTENT_LENGTH=64 * 1024,
        PREFERRED_URL_SCHEME="https" if secure else "http",
        TEMPLATES_AUTO_RELOAD=False,
    )
    if settings.app.trusted_proxies:
        n = settings.app.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    app.extensions["release"] = services or build_services(settings)
    from release.ops import logs

    logs.init_app(app, settings.logging)  # first: its hooks see every request, even refused ones
    from release.web import input_guard

    input_guard.init_app(app)  # before anything reads input (CSRF, limits, CAPTCHA, database)
    CSRFProtect(app)
    _register(app, settings)
    from release.web import limits

    limits.init_app(app, settings)  # its hook after CSRFProtect's: a forged POST is refused before it counts
    return app


def _register(app: Flask, settings: Settings) -> None:
    from release.ops import cli
    from release.web import (
        branding,
        converters,
        database,
        errors,
        home,
        i18n,
        preview,
        probes,
        recipient,
        rspamd_push,
        sender,
        untrusted,
    )
    from release.web import gateway_endpoints as gateway_api
    from release.web import headers as security
    from release.web.admin import views as admin
    from release.web.api import views as api

    converters.register(app)  # first: the routes below use <id:...>
    app.register_blueprint(home.bp)
    app.register_blueprint(probes.bp)
    api.register(app)
    app.register_blueprint(admin.bp)
    app.register_blueprint(sender.bp)
    app.register_blueprint(recipient.bp)
    app.register_blueprint(preview.bp)
    app.register_blueprint(gateway_api.bp)
    app.register_blueprint(rspamd_push.bp)
    if settings.app.demo:
        from release.devtools import demo

        app.register_blueprint(demo.bp)
    errors.register(app)
    untrusted.register(app)
    i18n.register(app, settings)
    branding.register(app, settings)
    security.register(app)
    database.register(app)
    cli.register(app)
    from release.devtools.simulator.command import simulator_command

    app.cli.add_command(simulator_command)  # a stand-in gateway to try the service on; binds nothing until run
