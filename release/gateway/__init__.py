"""Gateway access: the protocol the flow depends on, Halon's API, and rspamd nodes whose
quarantine is the service's own database."""

from release.config import NodeSettings
from release.db.engine import Database
from release.gateway.base import (
    ContentUnavailable,
    DeliveryUncertain,
    Gateway,
    GatewayError,
    GatewayRejected,
    MessageContent,
    NodeHealth,
    QuarantinedCopy,
)
from release.gateway.halon import HalonGateway
from release.gateway.halon_transport import Trace
from release.gateway.rspamd import RspamdGateway


def gateway_for(node: NodeSettings, trace: Trace | None = None, db: Database | None = None) -> Gateway:
    """The gateway client for one configured node. Halon: one HTTP session each; ``trace``
    receives every request and answer, secrets redacted (check-gateway --trace). rspamd:
    the copies live in ``db`` (without it, only :meth:`Gateway.health` works)."""
    if node.type == "rspamd":
        return RspamdGateway(node, db)
    return HalonGateway(node, trace=trace)


__all__ = [
    "ContentUnavailable",
    "DeliveryUncertain",
    "Gateway",
    "GatewayError",
    "GatewayRejected",
    "HalonGateway",
    "MessageContent",
    "NodeHealth",
    "QuarantinedCopy",
    "RspamdGateway",
    "gateway_for",
]
