"""Operator commands: `flask --app app <command>`."""

from __future__ import annotations

import gc
import logging
import signal
import sys
import time
from types import FrameType

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext

from release.container import Services
from release.core import links
from release.core import purge as enforcement
from release.db import migrate
from release.db.models import utcnow
from release.db.states import AdminRole
from release.ops.check_config import check_config_command
from release.ops.check_gateway import check_gateway_command
from release.ops.smoke import report_command
from release.web.admin import auth


def register(app: Flask) -> None:
    """Attach the command groups to the app."""
    app.cli.add_command(db_group)
    app.cli.add_command(worker_command)
    app.cli.add_command(sign_link_command)
    app.cli.add_command(check_config_command)
    app.cli.add_command(check_gateway_command)
    app.cli.add_command(report_command)
    app.cli.add_command(create_admin_command)
    app.cli.add_command(purge_command)


def _services() -> Services:
    from flask import current_app

    found: Services = current_app.extensions["release"]
    return found


@click.group("db", cls=AppGroup)
def db_group() -> None:
    """Database schema (Alembic migrations)."""


@db_group.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    before, after = migrate.upgrade(_services().db, revision)
    if before == after:
        click.echo(f"already at revision {after}" if after else "the database has no schema (nothing to do)")
    elif before is None:
        click.echo(f"created schema at revision {after}")
    else:
        click.echo(f"upgraded from {before} to {after}")


@db_group.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION ("base": drop the schema)."""
    before, after = migrate.downgrade(_services().db, revision)
    if before == after:
        click.echo(f"already at revision {after}" if after else "the database has no schema (nothing to do)")
    else:
        click.echo(f"downgraded from {before} to {after or 'an empty database (base)'}")


@click.command("worker")
@with_appcontext
def worker_command() -> None:
    """Run a worker process (any number may run against one PostgreSQL database)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker = _services().build_worker(in_process=False)
    # What is built by now (app, settings, templates, mappers) lives as long as the process:
    # frozen, the collector stops rescanning it on each of the many collections that building
    # mails sets off (bench/README.md: 2.64 -> 2.48 ms of worker CPU per job).
    gc.freeze()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        click.echo("stopping after the jobs in flight…", err=True)
        worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.run()


@click.command("sign-link")
@with_appcontext
@click.option("--node", required=True, help="Node name, as in [[nodes]].name")
@click.option("--msgid", required=True, help="The gateway's message (transaction) id")
@click.option("--time", "issued_at", type=int, default=None, help="Issue time, Unix seconds (default: now)")
def sign_link_command(node: str, msgid: str, issued_at: int | None) -> None:
    """Print a signed report link, exactly as the gateway builds it."""
    settings = _services().settings
    if settings.node(node) is None:
        raise click.BadParameter(f"unknown node {node!r}; configured: {', '.join(n.name for n in settings.nodes)}")
    if not links.MESSAGE_ID_RE.match(msgid):
        raise click.BadParameter("message ids are 1-128 characters of A-Z a-z 0-9 . _ @ : -")
    issued = int(time.time()) if issued_at is None else issued_at
    click.echo(links.build_report_url(settings.app.public_url, settings.links.keys[0], node, msgid, issued))


@click.command("create-admin")
@with_appcontext
@click.argument("username")
@click.option(
    "--role", type=click.Choice([r.value for r in AdminRole]), default=AdminRole.ADMIN.value, show_default=True
)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input")
def create_admin_command(username: str, role: str, password_stdin: bool) -> None:
    """Create an admin console account (the password is asked for, hidden, twice)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        auth.check_new_password(password)
        with _services().db.session() as session:
            auth.create_admin(session, username, password, role, actor="cli")
            session.commit()
    except auth.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {role} account {username}")


@click.command("purge")
@with_appcontext
@click.option("--dry-run", is_flag=True, help="Only show what would be deleted and purged")
def purge_command(dry_run: bool) -> None:
    """Enforce retention once: delete copies past retention on the gateways, purge old records."""
    svc = _services()
    with svc.db.session() as session:
        result = enforcement.enforce(session, svc.gateways, svc.settings, utcnow(), dry_run=dry_run)
    for line in result.lines():
        click.echo(line)
    if result.errors:
        sys.exit(1)
