"""``sim`` (a simulator with one known API user) and ``server`` (it over real HTTP)."""

from tests.support.simulator import server, sim

__all__ = ["server", "sim"]
