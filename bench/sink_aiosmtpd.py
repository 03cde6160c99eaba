"""A bare aiosmtpd server that accepts and discards every message: the ceiling of a Python
SMTP listener (same aiosmtpd options as mailgate's listener, no storage). Prints its port."""

from __future__ import annotations

import asyncio
import signal

from aiosmtpd.smtp import SMTP, Envelope, Session


class Discard:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 2.0.0 OK discarded"


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            Discard(),
            hostname="aiosmtpd.bench",
            data_size_limit=50 * 1024 * 1024,
            enable_SMTPUTF8=True,
            decode_data=False,
            timeout=300,
        ),
        host="127.0.0.1",
        port=0,
        backlog=1024,
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
