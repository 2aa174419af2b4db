"""Gateway access: the protocol the flow depends on and the Halon implementation."""

from release.config import NodeSettings
from release.gateway.base import Gateway, GatewayError, GatewayRejected, NodeHealth, QuarantinedCopy
from release.gateway.halon import HalonGateway
from release.gateway.halon_transport import Trace


def gateway_for(node: NodeSettings, trace: Trace | None = None) -> HalonGateway:
    """The gateway client for one configured node (one HTTP session each); ``trace``
    receives every request and answer, secrets redacted (check-gateway --trace)."""
    return HalonGateway(node, trace=trace)


__all__ = [
    "Gateway",
    "GatewayError",
    "GatewayRejected",
    "HalonGateway",
    "NodeHealth",
    "QuarantinedCopy",
    "gateway_for",
]
