"""A recording proxy for SMTP with STARTTLS: the lines a client really sends, in clear.

After STARTTLS a transcript can only be taken by someone holding a certificate the client
trusts: the proxy ends TLS towards the client with the test CA's certificate and opens its
own TLS session to the real server, then passes every line on and keeps a copy. Before
STARTTLS it relays command by command (greeting, EHLO, STARTTLS); after it, both
directions flow freely (DATA is not lock-step). Runs on its own thread and event loop so
that tests driving the CLI as a subprocess can use it. 127.0.0.1, port 0.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from dataclasses import dataclass, field

from tests.bounds import HANG, SOCKET


@dataclass
class RecordingProxy:
    target_port: int
    #: Presented to the client (a certificate the client trusts).
    server_context: ssl.SSLContext
    #: Used towards the real server.
    client_context: ssl.SSLContext
    #: Every line the clients sent (CRLF included), in order, all connections.
    sent: list[bytes] = field(default_factory=list)
    #: Every reply line the server sent.
    replies: list[bytes] = field(default_factory=list)
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> int:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", 0, limit=1 << 20)
            )
            self.port = int(self._server.sockets[0].getsockname()[1])
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="smtp-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(SOCKET):
            raise RuntimeError("the recording proxy did not start")
        return self.port

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=10)

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(HANG)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(HANG)
        loop.close()

    def lines(self) -> list[bytes]:
        with self._lock:
            return list(self.sent)

    def reply_lines(self) -> list[bytes]:
        with self._lock:
            return list(self.replies)

    def _keep(self, into: list[bytes], line: bytes) -> None:
        with self._lock:
            into.append(line)

    async def _reply(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Relay one whole reply (continuation lines "ddd-")."""
        while True:
            line = await reader.readline()
            if not line:
                raise ConnectionError("the server closed the connection")
            self._keep(self.replies, line)
            writer.write(line)
            await writer.drain()
            if line[3:4] != b"-":
                return

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, into: list[bytes]
    ) -> None:
        while line := await reader.readline():
            self._keep(into, line)
            writer.write(line)
            await writer.drain()
        writer.close()

    async def _serve(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        uwriter: asyncio.StreamWriter | None = None
        try:
            ureader, uwriter = await asyncio.open_connection(
                "127.0.0.1", self.target_port, limit=1 << 20
            )
            await self._reply(ureader, cwriter)  # the greeting
            while True:  # lock-step until TLS
                line = await creader.readline()
                if not line:
                    return
                self._keep(self.sent, line)
                uwriter.write(line)
                await uwriter.drain()
                if line.strip().upper() == b"STARTTLS":
                    ready = await ureader.readline()
                    self._keep(self.replies, ready)
                    if ready.startswith(b"220 "):
                        break
                    cwriter.write(ready)
                    continue
                await self._reply(ureader, cwriter)
            await uwriter.start_tls(self.client_context, server_hostname="127.0.0.1")
            # The client's TLS hello follows the 220 at once: take the stream over to TLS
            # before this task yields, or the hello lands in the plaintext buffer.
            cwriter.write(ready)
            await cwriter.start_tls(self.server_context)
            await asyncio.gather(
                self._pump(creader, uwriter, self.sent), self._pump(ureader, cwriter, self.replies)
            )
        except (ConnectionError, ssl.SSLError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for writer in (cwriter, uwriter):
                if writer is not None:
                    writer.transport.abort()
            self._tasks.discard(task)


def long_command_lines(sent: list[bytes], limit: int = 512) -> list[bytes]:
    """Command lines longer than *limit* octets (CRLF included), RFC 4954 section 4.

    Not counted: the SASL response after a bare ``AUTH <mechanism>`` (a response line, not a
    command, which a token makes long) and the message text between DATA and ".".
    """
    found: list[bytes] = []
    in_data = after_bare_auth = False
    for line in sent:
        words = line.strip().upper().split()
        if in_data:
            in_data = line != b".\r\n"
        elif after_bare_auth:
            after_bare_auth = False
        else:
            if len(line) > limit:
                found.append(line)
            in_data = words == [b"DATA"]
            after_bare_auth = len(words) == 2 and words[0] == b"AUTH"
    return found
