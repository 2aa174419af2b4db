"""Gateway access: the protocol the flow depends on and the Halon implementation."""

from release.config import NodeSettings
from release.gateway.base import Gateway, GatewayError, GatewayRejected, NodeHealth, QuarantinedCopy
from release.gateway.halon import HalonGateway


def gateway_for(node: NodeSettings) -> HalonGateway:
    """The gateway client for one configured node (one HTTP session each)."""
    return HalonGateway(node)


__all__ = [
    "Gateway",
    "GatewayError",
    "GatewayRejected",
    "HalonGateway",
    "NodeHealth",
    "QuarantinedCopy",
    "gateway_for",
]
