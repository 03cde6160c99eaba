"""`serve` on a fresh data directory: mail is held until the provider is configured and
someone signs in, and settings saved meanwhile apply without a restart."""

from __future__ import annotations

import asyncio
import smtplib
import threading
from pathlib import Path

from mailgate.account import device_sign_in
from mailgate.config.store import init_data_dir
from mailgate.gateway.delivery import SIGN_IN_HOLD
from mailgate.gateway.queue import State
from mailgate.service import Gateway, ListenOverride
from mailgate.sim.server import SimulatorThread
from tests.bounds import HANG, SOCKET

CLIENT_ID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
MESSAGE = b"From: mfp@printer.local\r\nTo: a@fabrikam.test\r\nSubject: early\r\n\r\nhi\r\n"


def _send(port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=SOCKET) as smtp:
        smtp.sendmail("mfp@printer.local", ["a@fabrikam.test"], MESSAGE)


def _sign_in(data_dir: Path, sim: SimulatorThread) -> None:
    with init_data_dir(data_dir) as store:
        flow = device_sign_in(store, store.settings())
        try:
            code = flow.start()
            threading.Timer(0.3, sim.sign_in, (code.user_code, "scanner@contoso.com")).start()
            flow.wait(code)
        finally:
            flow.close()


async def _until(condition: object, limit: float = HANG) -> None:
    async with asyncio.timeout(limit):
        while not condition():  # type: ignore[operator]  # noqa: ASYNC110 - state is in SQLite
            await asyncio.sleep(0.1)


async def test_unconfigured_serve_holds_then_delivers(sim: SimulatorThread, tmp_path: Path) -> None:
    sim.set_scenario(poll_interval=1)
    data_dir = tmp_path / "data"
    store = init_data_dir(data_dir)
    settings = store.settings(allow_incomplete=True)
    assert not settings.configured
    assert "mailgate config provider" in settings.missing
    gateway = Gateway(store, settings, ListenOverride("127.0.0.1", 0))
    port = (await gateway.start())[0][1]
    try:
        await asyncio.to_thread(_send, port)
        await _until(lambda: gateway.queue.counts()["held"] == 1)
        [held] = gateway.queue.messages()
        assert held.held_reason == SIGN_IN_HOLD

        # The administrator configures the provider while serve runs...
        store.apply_provider(
            "exchange-online",
            client_id=CLIENT_ID,
            server=f"127.0.0.1:{sim.smtp_port}",
            host=sim.idp_hostport,
        )
        store.set("network.ca_bundle", str(sim.ca_path))
        assert await gateway.reload()
        assert gateway.settings.configured
        assert gateway.tokens is not None
        assert not gateway.restart_needed()
        # ... and signs in (here as `mailgate login` would, in another thread).
        await asyncio.to_thread(_sign_in, data_dir, sim)
        await _until(lambda: gateway.queue.counts()["sent"] == 1)
        [message] = sim.state.messages
        assert message.upn == "scanner@contoso.com"
        assert message.mail_from == "scanner@contoso.com"
    finally:
        await gateway.stop(grace=5)
        store.close()


async def test_listener_changes_need_a_restart(tmp_path: Path) -> None:
    store = init_data_dir(tmp_path / "data")
    gateway = Gateway(store, store.settings(allow_incomplete=True), ListenOverride("127.0.0.1", 0))
    try:
        store.set("sender.policy", "pass-through")
        assert await gateway.reload()
        assert gateway.engine.settings.policy.value == "pass-through"
        assert not gateway.restart_needed()
        store.set("listener.port", "2600")
        assert await gateway.reload()
        assert gateway.restart_needed()
        assert not await gateway.reload()
        assert gateway.queue.counts()[State.QUEUED.value] == 0
    finally:
        await gateway.stop(grace=1)
        store.close()
