"""`mailgate serve` with more delivery workers than `delivery.connections` allows (1-20):
the token bench asks for 32 concurrent deliveries. Everything else is serve's own wiring
(mailgate.service.Gateway); only the engine is rebuilt with the wider setting.

usage: gateway_proc.py DATA_DIR CONNECTIONS READY_FILE
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import sys
from pathlib import Path

from mailgate.config.store import Store
from mailgate.gateway.delivery import DeliveryEngine
from mailgate.service import Gateway, ListenOverride, ready_file_written


async def main(data_dir: Path, connections: int, ready: Path) -> None:
    with Store.open(data_dir) as store:
        gateway = Gateway(store, store.settings(), ListenOverride("127.0.0.1", 0))
        wide = dataclasses.replace(gateway._delivery_settings(), connections=connections)
        gateway.engine = DeliveryEngine(
            gateway.queue, gateway.db, gateway._open_upstream, gateway._identity, wide
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        bound = await gateway.start()
        with ready_file_written(ready, bound):
            await stop.wait()
        await gateway.stop(grace=5)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])))
