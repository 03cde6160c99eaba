"""Fixtures of the gateway tests."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from mailgate.certs import ensure_self_signed
from mailgate.db.migrate import upgrade
from mailgate.gateway.devices import DeviceAccounts
from mailgate.gateway.inbound import InboundPolicy
from mailgate.gateway.listener import GatewayHandler, Listener, ListenSpec
from mailgate.gateway.queue import Incoming, QueueStore
from tests.gateway.e2e_helpers import cloud, mailgate, servers, sim, template
from tests.gateway.listener_helpers import Running, Start

#: Module-shared simulator fixtures of the `serve` end-to-end tests.
__all__ = ["cloud", "mailgate", "servers", "sim", "start_listener", "template"]


@pytest.fixture
async def start_listener(tmp_path: Path) -> AsyncIterator[Start]:
    listeners: list[Listener] = []
    writer = ThreadPoolExecutor(1)
    engine = upgrade(create_engine(f"sqlite:///{tmp_path / 'gw.db'}"))
    queue = QueueStore(engine)
    devices = DeviceAccounts(engine)
    cert, key = ensure_self_signed(tmp_path, "smtp", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def start(policy: InboundPolicy | None = None, fail_store: bool = False) -> Running:
        loop = asyncio.get_running_loop()

        async def store(incoming: Incoming) -> int:
            if fail_store:
                raise OSError(28, "No space left on device")
            return await loop.run_in_executor(writer, queue.accept, incoming, 0.0)

        async def verify(user: str, password: str) -> bool:
            return await loop.run_in_executor(None, devices.verify, user, password)

        handler = GatewayHandler(policy or InboundPolicy(), store, verify)
        listener = Listener(handler, [ListenSpec("127.0.0.1", 0)], context, "gw.test")
        bound = await listener.start()
        listeners.append(listener)
        return Running(bound[0][1], queue, devices, handler, cert)

    yield start
    for listener in listeners:
        await listener.stop()
    writer.shutdown()
