"""The HTTPS proxy setting: sign-in traffic goes through a CONNECT proxy (RFC 9110 9.3.6).

A small forwarding proxy on 127.0.0.1 records the CONNECT targets it is asked for; the
device code sign-in must succeed through it, with TLS to the identity platform still
verified end to end against the configured CA.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

import pytest

from mailgate.config.model import TrustConfig
from mailgate.identity.signin import DeviceCodeSignIn
from mailgate.sim.server import SimulatorThread
from tests.identity.helpers import approve_soon, oauth_for


class ConnectProxy:
    def __init__(self) -> None:
        self.targets: list[str] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = request.split(b"\r\n", 1)[0].decode().split(" ", 2)
        self.targets.append(f"{method} {target}")
        host, _, port = target.rpartition(":")
        if method != "CONNECT" or host != "127.0.0.1":  # this proxy forwards nowhere else
            writer.write(b"HTTP/1.1 403 Forbidden\r\n\r\n")
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            up_writer.close()
            writer.close()

    def __enter__(self) -> ConnectProxy:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    with ConnectProxy() as running:
        yield running


def test_sign_in_goes_through_the_proxy(sim: SimulatorThread, proxy: ConnectProxy) -> None:
    sim.set_scenario(poll_interval=1)
    trust = TrustConfig(ca_bundle=sim.ca_path, https_proxy=f"http://127.0.0.1:{proxy.port}")
    flow = DeviceCodeSignIn(oauth_for(sim), trust)
    try:
        code = flow.start()
        approve_soon(sim, code.user_code, "scanner@contoso.com")
        result = flow.wait(code)
    finally:
        flow.close()
    assert result.upn == "scanner@contoso.com"
    assert proxy.targets
    assert set(proxy.targets) == {f"CONNECT {sim.idp_hostport}"}
