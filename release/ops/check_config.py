"""`flask --app app check-config`: one line per part the service depends on, each saying ok,
WARN or FAIL, and on WARN or FAIL what to do about it. Exits 1 on a FAIL only.

Checked: the database, every gateway node (reached with its credentials; an http:// URL is a
WARN), the SMTP server, the rate-limit storage (Redis answers PING; limits fail open, so a
typo would otherwise never show), the CAPTCHA provider (a siteverify URL answers and does not
refuse the secret; published test keys are a FAIL) and the public URL (not https outside a
trial on this machine is a FAIL: release links and session cookies would travel in clear).
"""

from __future__ import annotations

import ipaddress
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import click
import redis
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import text

from release.captcha import keys as captcha_keys
from release.captcha.siteverify import SiteverifyCaptcha
from release.config import NodeSettings, Settings
from release.container import Services

OK, WARN, FAIL = "ok", "WARN", "FAIL"
# A Redis that does not answer in this time would stall every rate-limited request as well.
REDIS_TIMEOUT_SECONDS = 2.0
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})
DETAIL_LIMIT = 400
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
# SQLAlchemy's "(Background on this error at: https://sqlalche.me/...)" tail: not the operator's news.
_BACKGROUND = re.compile(r"\s*\(Background on this error at: [^)]*\)")


@dataclass(frozen=True)
class Line:
    """One check's verdict; ``fix`` is what the operator should do when it is not ok."""

    label: str
    verdict: str
    detail: str
    fix: str = ""

    def render(self) -> str:
        """``label  verdict detail``, and on WARN/FAIL ``-> what to do``: always one line, with
        no control character from a server's answer (no forged lines, no terminal escapes)."""
        detail = _CONTROL.sub(" ", _BACKGROUND.sub("", self.detail)).strip()[:DETAIL_LIMIT]
        text = f"{self.label:<12} {self.verdict:<4} {detail}"
        if self.verdict != OK and self.fix:
            text += f" -> {self.fix}"
        return text


@click.command("check-config")
@with_appcontext
def check_config_command() -> None:
    """Validate the configuration and reach the database, every node, the SMTP server, the
    rate-limit storage and the CAPTCHA provider; exits 1 when a line says FAIL."""
    svc: Services = current_app.extensions["release"]
    failed = warned = 0
    for line in run_checks(svc):
        click.echo(line.render())
        failed += line.verdict == FAIL
        warned += line.verdict == WARN
    if warned:
        click.echo(f"{warned} warning(s)", err=True)
    if failed:
        click.echo(f"{failed} problem(s) found", err=True)
        sys.exit(1)


def run_checks(svc: Services) -> Iterator[Line]:
    """Every check, in the order an operator fixes things."""
    settings = svc.settings
    yield public_url_line(settings)
    yield database_line(svc)
    yield from node_lines(svc)
    yield smtp_line(svc)
    yield limits_line(settings.limits.storage_url)
    yield from captcha_lines(svc)


def public_url_line(settings: Settings) -> Line:
    """https, or a trial: plain http is a FAIL in production unless the host is this machine."""
    url = settings.app.public_url
    if urlsplit(url).scheme == "https" or settings.app.demo:
        return Line("public url", OK, url)
    fix = "serve the service behind TLS (docs/deployment.md, nginx) and set [app] public_url to its https:// URL"
    if _is_loopback(urlsplit(url).hostname or ""):
        return Line("public url", WARN, f"{url} is plain http (fine for a trial on this machine only)", fix)
    return Line("public url", FAIL, f"{url} is plain http: release links and session cookies travel in clear", fix)


def database_line(svc: Services) -> Line:
    """``SELECT 1`` through the service's own engine."""
    url = svc.db.url
    if any(key.lower() == "password" for key in url.query):
        url = url.update_query_dict({k: "***" for k in url.query if k.lower() == "password"})
    shown = url.render_as_string(hide_password=True)
    try:
        with svc.db.session() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - report every kind of failure to the operator
        fix = "check [database] url (RELEASE_DATABASE__URL) and that the server is up"
        return Line("database", FAIL, f"{shown}: {type(exc).__name__}: {exc}", fix)
    return Line("database", OK, shown)


def node_lines(svc: Services) -> Iterator[Line]:
    """Each node's authenticated health call; an http:// API URL is a WARN of its own."""
    for i, node in enumerate(svc.settings.nodes):
        label = f"node {node.name}"
        gateway = svc.gateways[node.name]
        health = gateway.health()
        ok = health.reachable and health.authenticated
        fix = f"check nodes[{i}].api_url and its credentials (docs/halon/README.md)"
        if node.type == "rspamd":
            fix = f"check nodes[{i}].relay_host, relay_port and relay_security (docs/rspamd/README.md)"
        yield Line(label, OK if ok else FAIL, f"{health.latency_ms:.0f} ms {health.detail}", fix)
        if node.type == "rspamd":
            yield from _rspamd_lines(i, node, gateway)
        elif urlsplit(node.api_url).scheme == "http":
            yield Line(
                label,
                WARN,
                f"nodes[{i}].api_url is http://: the node's credentials and message data travel in clear",
                f"use the node's https:// listener in nodes[{i}].api_url (ca_file for a private CA)",
            )


def _rspamd_lines(i: int, node: NodeSettings, gateway: Any) -> Iterator[Line]:
    """The controller (learn-ham) when configured, and a relay reached in clear over a network."""
    label = f"node {node.name}"
    if node.controller_url:
        ok, detail = gateway.check_controller()
        fix = f"check nodes[{i}].controller_url and controller_password (Rspamd's enable_password)"
        yield Line(label, OK if ok else FAIL, detail, fix)
    controller_host = urlsplit(node.controller_url).hostname or ""
    if node.controller_url.startswith("http://") and not _is_loopback(controller_host):
        yield Line(
            label,
            WARN,
            f"nodes[{i}].controller_url is http:// to another host: its password and released messages travel in clear",
            f"use https:// for nodes[{i}].controller_url (an nginx in front of the controller), or a loopback address",
        )
    if node.relay_security == "none" and not _is_loopback(node.relay_host):
        yield Line(
            label,
            WARN,
            f"nodes[{i}].relay_host is reached without TLS: released messages travel in clear",
            f'set nodes[{i}].relay_security = "starttls" (or relay over loopback)',
        )


def smtp_line(svc: Services) -> Line:
    """Connect, greet (STARTTLS and login as configured), quit."""
    check = getattr(svc.mailer, "check", None)
    if check is None:
        return Line("smtp", OK, "no SMTP check for this mailer")
    ok, detail = check()
    fix = "check [smtp] host, port, security and username/password (docs/operations.md)"
    return Line("smtp", OK if ok else FAIL, detail, fix)


def limits_line(storage_url: str) -> Line:
    """The rate-limit storage: memory counts per process; Redis must answer PING."""
    scheme = urlsplit(storage_url).scheme
    if scheme == "memory":
        return Line("rate limits", OK, "memory:// counts per process: fine for one process, use redis for several")
    shown = _without_password(storage_url)
    client = redis.Redis.from_url(
        storage_url, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        fix = "start Redis or correct [limits] storage_url (RELEASE_LIMITS__STORAGE_URL); limits fail open meanwhile"
        return Line("rate limits", FAIL, f"{shown}: {type(exc).__name__}: {exc}", fix)
    finally:
        client.close()
    return Line("rate limits", OK, f"{shown} answers PING")


def captcha_lines(svc: Services) -> Iterator[Line]:
    """ALTCHA needs nothing outside; a siteverify provider is reached and its keys looked at."""
    captcha = svc.captcha
    provider = svc.settings.captcha
    if not isinstance(captcha, SiteverifyCaptcha):
        yield Line("captcha", OK, f"{captcha.provider}: self-hosted, no account or keys needed")
        return
    probe = captcha.probe()
    fix = (
        "check [captcha] secret (RELEASE_CAPTCHA__SECRET) against the provider's dashboard"
        if probe.reason.startswith("the provider refused")
        else "check [captcha] verify_url (empty: the provider's own) and outbound HTTPS from this host"
    )
    reason = probe.reason.replace(provider.secret, "***") if provider.secret else probe.reason
    yield Line("captcha", OK if probe.ok else FAIL, f"{provider.provider} {captcha.verify_url}: {reason}", fix)
    verify = urlsplit(captcha.verify_url)
    if verify.scheme == "http" and not _is_loopback(verify.hostname or ""):  # a local stand-in is fine
        yield Line(
            "captcha",
            WARN,
            "[captcha] verify_url is http://: the secret and every answer travel in clear",
            "use the provider's https:// siteverify URL (empty verify_url: the provider's own)",
        )
    test_keys = captcha_keys.published_test_keys(provider.provider, provider.site_key, provider.secret)
    if test_keys and not svc.settings.app.demo:
        yield Line(
            "captcha",
            FAIL,
            f"{' and '.join(test_keys)}: a published test key, which passes (or fails) every answer, robot or not",
            "fine for a staging smoke test only; put the keys from the provider's dashboard in production",
        )
    for problem in captcha_keys.shape_problems(provider.provider, provider.site_key, provider.secret):
        yield Line("captcha", WARN, problem, "copy the keys again from the provider's dashboard")


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _without_password(url: str) -> str:
    """The URL with its password masked, in the user:password@ part and in a
    ``?password=`` query parameter (redis-py reads both)."""
    parts = urlsplit(url)
    if parts.password is not None:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1))
    query = [(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return parts._replace(query=urlencode(query, safe="*")).geturl()
