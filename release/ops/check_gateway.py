"""`flask --app app check-gateway`: prove on a real node that every shape we send is accepted.

Halon cannot run in our tests, so the adapter follows Halon's published shapes; this command
is how an operator confirms them on their own node in a minute. Without ``--message`` it
changes nothing; with one it re-marks a held copy and puts it back, reading each step back
from the node, then reads the start of the message as a preview would (5.x). ``--trace``
prints every request and answer (secrets redacted) to compare with ``halonctl queue ...
--json-request --json`` on the node.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click
from flask import current_app
from flask.cli import with_appcontext

from release.config import NodeSettings, Settings
from release.gateway import ContentUnavailable, GatewayError, HalonGateway, NodeHealth, QuarantinedCopy, RspamdGateway

# Bytes a preview check reads: enough to prove the file read's shape, little of anyone's mail.
CONTENT_PROBE_BYTES = 1024


class CheckFailed(Exception):
    """One step did not do what it should; the message says what to look at."""


@click.command("check-gateway")
@with_appcontext
@click.option("--node", "node_name", required=True, help="The node's name in the config.")
@click.option(
    "--message", "transaction", default=None, help="A held message's transaction id (re-marked, then put back)."
)
@click.option("--trace", is_flag=True, help="Print every request and answer, secrets redacted.")
def check_gateway_command(node_name: str, transaction: str | None, trace: bool) -> None:
    """Check a node's API with the exact requests the service sends."""
    settings: Settings = current_app.extensions["release"].settings
    node = settings.node(node_name)
    if node is None:
        names = ", ".join(n.name for n in settings.nodes) or "none"
        raise click.BadParameter(f"unknown node {node_name!r}; configured: {names}", param_hint="--node")
    if node.type == "rspamd":
        _check_rspamd(node, transaction)
        return
    with HalonGateway(node, trace=click.echo if trace else None) as gateway:
        try:
            _check_access(gateway)
            if transaction is not None:
                _check_message(gateway, node, transaction)
        except (CheckFailed, GatewayError) as exc:
            click.echo(f"FAIL  {exc}")
            sys.exit(1)
    click.echo("all checks passed")


def _check_rspamd(node: NodeSettings, transaction: str | None) -> None:
    """An rspamd node has no API to call: check what the service calls, the relay and the
    controller (the push side is checked by sending GTUBE, docs/rspamd/README.md)."""
    if transaction is not None:
        raise click.BadParameter("an rspamd node's copies are kept by the service: nothing to re-mark on the node",
                                 param_hint="--message")  # fmt: skip
    gateway = RspamdGateway(node, None)
    try:
        checks = [gateway.health()]
        if gateway.learns:
            ok, detail = gateway.check_controller()
            checks.append(NodeHealth(ok, ok, 0.0, detail))
    finally:
        gateway.close()
    for health in checks:
        click.echo(f"{'ok  ' if health.reachable else 'FAIL'}  {health.detail}")
    if not all(h.reachable for h in checks):
        sys.exit(1)
    click.echo("all checks passed")


def _check_access(gateway: HalonGateway) -> None:
    health = gateway.health()
    if not (health.reachable and health.authenticated):
        raise CheckFailed(health.detail)
    click.echo(f"ok    {health.detail} ({health.latency_ms:.0f} ms)")


def _check_message(gateway: HalonGateway, node: NodeSettings, transaction: str) -> None:
    copies = gateway.find(transaction)
    if not copies:
        raise CheckFailed(f"no copies of {transaction} on node {node.name} (expired, released, or a wrong id?)")
    ours = (node.short_quarantine, node.long_quarantine)
    for copy in copies:
        click.echo(f"ok    found queue {copy.queue}: {copy.recipient or '?'} in {copy.quarantine or 'no quarantine'}")
    strangers = [c for c in copies if c.quarantine not in ours]
    if strangers:
        raise CheckFailed(
            f"queue {strangers[0].queue} is not marked {' or '.join(ours)}: "
            "check the HSL's marker against short_quarantine/long_quarantine"
        )
    other = {node.short_quarantine: node.long_quarantine, node.long_quarantine: node.short_quarantine}
    for original in ours:
        group = [c for c in copies if c.quarantine == original]
        if group:
            _remark(gateway, transaction, group, other[original])
            _put_back(gateway, transaction, group, original)
    _check_content(gateway, transaction, copies[0].queue)


def _check_content(gateway: HalonGateway, transaction: str, queue: int) -> None:
    """The preview's requests: a node that cannot give content is a note (releases still
    work); one that answers them wrongly fails."""
    try:
        content = gateway.content(transaction, queue, CONTENT_PROBE_BYTES)
    except ContentUnavailable as exc:
        click.echo(f"note  no preview: {exc}")
        return
    if content is None:
        raise CheckFailed(f"queue {queue} of {transaction} was gone before its message could be read")
    click.echo(f"ok    read the message's first {len(content.data)} of {content.size} bytes (preview)")


def _put_back(gateway: HalonGateway, transaction: str, group: Sequence[QuarantinedCopy], original: str) -> None:
    """Re-mark the copies as they were, trying twice; if the node keeps refusing, say plainly
    which copies are left changed and what to do (the service has no record of them)."""
    try:
        _remark(gateway, transaction, group, original)
    except (CheckFailed, GatewayError):
        try:
            _remark(gateway, transaction, group, original)
        except (CheckFailed, GatewayError) as exc:
            queues = ", ".join(str(c.queue) for c in group)
            raise CheckFailed(
                f"{exc}\nLEFT CHANGED: queue {queues} of {transaction} may still be marked otherwise than "
                f"{original}, as it was before this check. Run the check again once the node answers, "
                f"or re-mark the copies as {original} on the node (or delete them if this was a test message)."
            ) from None


def _remark(gateway: HalonGateway, transaction: str, group: Sequence[QuarantinedCopy], target: str) -> None:
    queues = [c.queue for c in group]
    moved = gateway.move(transaction, queues, target)
    again = {c.queue: c.quarantine for c in gateway.find(transaction)}
    wrong = [q for q in queues if again.get(q) != target]
    if moved != len(queues) or wrong:
        listed = ", ".join(f"queue {q}: {again.get(q) or 'gone'}" for q in wrong or queues)
        raise CheckFailed(f"re-marked as {target}, but the node then lists {listed}")
    click.echo(f"ok    re-marked queue {', '.join(map(str, queues))} as {target}, read back")
