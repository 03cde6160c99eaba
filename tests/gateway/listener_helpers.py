"""A device-facing listener on 127.0.0.1:0 backed by a real queue, for listener tests."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from mailgate.gateway.devices import DeviceAccounts
from mailgate.gateway.listener import GatewayHandler
from mailgate.gateway.queue import QueueStore


@dataclass
class Running:
    port: int
    queue: QueueStore
    devices: DeviceAccounts
    handler: GatewayHandler
    cert: Path


Start = Callable[..., Awaitable[Running]]


def client_context(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))
