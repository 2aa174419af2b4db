"""``sim``: a simulator of each Halon generation with known credentials; ``server``: it over
real HTTP. Every adapter test runs against both."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from release.devtools.simulator import HalonSimulator, SimulatorServer
from tests.support.simulator import API_KEY, PASSWORD, USER


@pytest.fixture(params=[5, 6], ids=["halon5", "halon6"])
def sim(request: pytest.FixtureRequest) -> HalonSimulator:
    return HalonSimulator({USER: PASSWORD}, generation=request.param, api_keys=[API_KEY])


@pytest.fixture
def server(sim: HalonSimulator) -> Iterator[SimulatorServer]:
    with SimulatorServer(sim) as running:
        yield running
