"""Fixtures shared by every test: the simulated Microsoft cloud on 127.0.0.1, port 0."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import requests
from sqlalchemy import Connection, Engine, event

if TYPE_CHECKING:
    from mailgate.sim.server import SimulatorThread


_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


@event.listens_for(Engine, "engine_connect")
def _remember(connection: Connection) -> None:
    _engines.add(connection.engine)


@pytest.fixture(autouse=True)
def _dispose_engines() -> Iterator[None]:
    """Close the pooled SQLite connections of engines a test made itself. The product closes
    its own (Store.close); a test's `create_engine(...)` would otherwise leave them to the
    garbage collector, which Python 3.13 reports as an unclosed database (a ResourceWarning,
    an error under this suite's settings)."""
    before = set(_engines)
    yield
    for engine in set(_engines) - before:
        engine.dispose()


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
