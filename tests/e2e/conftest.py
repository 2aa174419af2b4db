"""The end-to-end flow runs against each Halon generation the service supports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from release.devtools.simulator import HalonSimulator, SimulatorServer


@pytest.fixture(params=[6, 5], ids=["halon6", "halon5"])
def simulator(request: pytest.FixtureRequest) -> Iterator[SimulatorServer]:
    """The simulator of one generation over real HTTP (overrides the suite's 5.x default)."""
    server = SimulatorServer(HalonSimulator({"release": "sim-password-0123"}, generation=request.param)).start()
    yield server
    server.stop()
