"""A simulator with one known API user, served over real HTTP (the gateway and simulator tests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from release.devtools.simulator import HalonSimulator, SimulatorServer

USER = "release-api"
PASSWORD = "s3cret-Pa55word-for-tests"
API_KEY = "s3cret-Api-Key-for-tests-0123"


@pytest.fixture
def sim() -> HalonSimulator:
    return HalonSimulator({USER: PASSWORD})


@pytest.fixture
def server(sim: HalonSimulator) -> Iterator[SimulatorServer]:
    with SimulatorServer(sim) as running:
        yield running
