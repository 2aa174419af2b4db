"""`flask --app app simulator` (and `python -m release.devtools.simulator`): a Halon node to try on.

An operator can point the service at it before touching a production gateway: it serves one
simulated node in the foreground, prints the ``[[nodes]]`` block to paste into the config and
a report link for each message added with ``--add``. It needs no database and no config; a
config, when there is one, only supplies the link key and public URL for those links.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from urllib.parse import urlsplit

import click

from release.config import ConfigError, Settings, load_settings
from release.core import links
from release.devtools.simulator.node import HalonSimulator
from release.devtools.simulator.nodeconfig import (
    NewMessage,
    check_block,
    node_block,
    node_values,
    parse_add,
    parse_user,
    random_credentials,
)
from release.devtools.simulator.server import SimulatorServer

DEFAULT_PORT = 8025
NODE_NAME = "sim"


def _users(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    try:
        return dict(parse_user(v) for v in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _adds(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> list[NewMessage]:
    try:
        return [parse_add(v) for v in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("simulator")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True, help="0: any free port")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on")
@click.option("--generation", type=click.Choice(["6", "5"]), default="6", show_default=True, help="Halon 6.x or 5.x")
@click.option(
    "--users", multiple=True, callback=_users, metavar="USER:PASSWORD", help="5.x: an HTTP Basic user (repeatable)"
)
@click.option("--api-key", "api_keys", multiple=True, metavar="KEY", help="6.x: an accepted X-API-Key (repeatable)")
@click.option(
    "--add",
    "messages",
    multiple=True,
    callback=_adds,
    metavar="SENDER,RCPT[;RCPT2],SUBJECT",
    help="Hold a rejected message in the short quarantine (repeatable)",
)
@click.option("--node", "name", default=NODE_NAME, show_default=True, help="The node's name in [[nodes]] and links")
def simulator_command(
    port: int,
    host: str,
    generation: str,
    users: dict[str, str],
    api_keys: tuple[str, ...],
    messages: list[NewMessage],
    name: str,
) -> None:
    """Serve a simulated Halon node until Ctrl+C; print its [[nodes]] config and report links."""
    gen = int(generation)
    if gen == 5 and api_keys:
        raise click.UsageError("--api-key is for 6.x nodes; a 5.x node takes --users USER:PASSWORD")
    if gen == 6 and users:
        raise click.UsageError("--users is for 5.x nodes; a 6.x node takes --api-key KEY")
    made_up = not (users or api_keys)
    if made_up:
        users, fresh_keys = random_credentials(gen)
        api_keys = tuple(fresh_keys)
    sim = HalonSimulator(users, generation=gen, api_keys=api_keys)
    server = SimulatorServer(sim, host=host, port=port)
    api_url = _display_url(host, port)  # checked before binding: a bad block never serves
    try:
        check_block(node_block(node_values(sim, name, api_url)))
    except ConfigError as exc:
        raise click.UsageError(f"the node block would not load: {exc}") from None
    settings = _known_settings()
    try:
        server.start()
    except (OSError, SystemExit):  # werkzeug prints the reason, then exits
        raise click.ClickException(f"cannot listen on {host}:{port}; pick another --port or --host") from None
    try:
        api_url = _display_url(host, urlsplit(server.url).port or port)
        sim.link_for = _link_builder(settings, name)
        _print_start(sim, node_block(node_values(sim, name, api_url)), api_url, made_up)
        for message in messages:
            now = int(time.time())  # the reject time: the gateway signs the link as it rejects
            transaction = sim.add_message(message.sender, message.recipients, message.subject, ts=now)
            link = sim.link_for(transaction, now)
            _print_message(transaction, message.sender, message.recipients, message.subject, link)
        _wait_for_stop()
    finally:
        server.stop()
        click.echo("simulator stopped")


def _display_url(host: str, port: int) -> str:
    """The URL the service should use: a wildcard address is reached on this machine as 127.0.0.1."""
    shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104 - only compared
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def _known_settings() -> Settings | None:
    """The service's settings when a config is at hand: the app's under `flask`, else the file's."""
    from flask import current_app, has_app_context

    if has_app_context():
        found: Settings = current_app.extensions["release"].settings
        return found
    from release import config_path_from_env

    path = config_path_from_env()
    if path is None:
        return None
    try:
        return load_settings(path)
    except ConfigError as exc:
        click.echo(f"note: config {path} not used for links: {exc}", err=True)
        return None


def _link_builder(settings: Settings | None, node: str) -> Callable[[str, int], str]:
    """A signed report link when the config has a link key, else the command that prints one."""
    if settings is not None and settings.links.keys:
        key, public_url = settings.links.keys[0], settings.app.public_url

        def signed(transaction: str, issued_at: int) -> str:
            return links.build_report_url(public_url, key, node, transaction, issued_at)

        return signed

    def command(transaction: str, _issued_at: int) -> str:
        return f"flask --app app sign-link --node {node} --msgid {transaction}"

    return command


def _print_start(sim: HalonSimulator, block: str, api_url: str, made_up: bool) -> None:
    kind = "5.x (HTTP Basic)" if sim.generation == 5 else f"6.{sim.minor} (halon-api, X-API-Key)"
    click.echo(f"Halon {kind} simulator at {api_url}/  (Ctrl+C to stop)")
    click.echo("Its page lists every held copy and has a form to add a rejected message.\n")
    click.echo("Paste this node into the service's config (RELEASE_CONFIG or instance/config.toml):\n")
    click.echo(block)
    if made_up:
        click.echo("The credentials above were made up for this run and are printed only once.\n")


def _print_message(transaction: str, sender: str, recipients: list[str], subject: str, link: str) -> None:
    click.echo(f"Rejected message {transaction}: {sender} -> {', '.join(recipients)}: {subject}")
    if link.startswith("flask "):
        click.echo(f"  report link (run once the node is in the config): {link}")
    else:
        click.echo(f"  report link: {link}")


def _wait_for_stop() -> None:
    """Block until SIGINT (Ctrl+C) or SIGTERM."""
    stop = threading.Event()

    def handle(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
