"""Fixtures shared by every test: the simulated Microsoft cloud on 127.0.0.1, port 0."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import requests

if TYPE_CHECKING:
    from mailgate.sim.server import SimulatorThread


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    """A running simulator (global cloud) for synchronous clients such as MSAL and smtplib."""
    from mailgate.sim.server import SimulatorThread

    with SimulatorThread(profile="global") as running:
        yield running


@pytest.fixture
def sim_21vianet() -> Iterator[SimulatorThread]:
    from mailgate.sim.server import SimulatorThread

    with SimulatorThread(profile="21vianet") as running:
        yield running


def https_session(sim: SimulatorThread) -> requests.Session:
    """A requests session that trusts only the simulator's CA.

    This machine sets REQUESTS_CA_BUNDLE, and requests lets that variable replace a
    session's `verify` on every request unless trust_env is off.
    """
    session = requests.Session()
    session.trust_env = False
    session.verify = str(sim.ca_path)
    return session
