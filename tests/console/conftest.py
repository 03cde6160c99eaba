"""A console on a gateway whose store points at the simulator; driven in-process (ASGI).

`starlette.testclient` would warn without `httpx2` (warnings are errors here), so the app
is driven with `httpx.ASGITransport`, as tests/sim/test_idp.py does. The gateway is built
but not started: the console only needs its store, queue, devices and engine.wake().
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mailgate.config.store import Store, init_data_dir
from mailgate.console.app import create_console_app
from mailgate.service import Gateway
from mailgate.sim.server import SimulatorThread

CLIENT_ID = "0a1b2c3d-4e5f-4789-abcd-ef0123456789"
SETUP_TOKEN = "setup-token-for-tests"
PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')

#: Every page of the console a logged-in administrator can open, relative to its root.
PAGES = ("", "smtp", "signin", "device", "sender", "inbound", "queue", "events", "test", "settings")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MAILGATE_SECRET_KEY", "MAILGATE_DATA_DIR", "MAILGATE_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def store(tmp_path: Path, sim: SimulatorThread) -> Iterator[Store]:
    """Provider exchange-online pointed at the simulator; nobody signed in."""
    with init_data_dir(tmp_path / "data") as opened:
        opened.apply_provider(
            "exchange-online",
            client_id=CLIENT_ID,
            server=f"127.0.0.1:{sim.smtp_port}",
            host=sim.idp_hostport,
        )
        opened.set("network.ca_bundle", str(sim.ca_path))
        sim.set_scenario(poll_interval=1)
        yield opened


@pytest.fixture
def gateway(store: Store) -> Iterator[Gateway]:
    built = Gateway(store, store.settings())
    yield built
    built.db.close()


@dataclass
class Browser:
    """An httpx client that remembers the page's CSRF token like a browser form would."""

    http: httpx.AsyncClient
    csrf: str = ""

    async def get(self, url: str, **kwargs: object) -> httpx.Response:
        response = await self.http.get(url, **kwargs)  # type: ignore[arg-type]
        found = _CSRF.search(response.text)
        if found:
            self.csrf = found.group(1)
        return response

    async def post(self, url: str, data: dict[str, str] | None = None) -> httpx.Response:
        return await self.http.post(url, data={"csrf": self.csrf, **(data or {})})

    async def api(self, method: str, url: str, json: object = None) -> httpx.Response:
        token = (await self.http.get("/api/session")).json()["csrf_token"]
        return await self.http.request(method, url, json=json, headers={"X-CSRF-Token": token})


def _client(gateway: Gateway) -> httpx.AsyncClient:
    app = create_console_app(gateway, SETUP_TOKEN, listeners=[("127.0.0.1", 2525, False)])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.fixture
async def anonymous(gateway: Gateway) -> AsyncIterator[Browser]:
    async with _client(gateway) as http:
        yield Browser(http)


async def set_up(browser: Browser) -> httpx.Response:
    await browser.get(f"/setup?token={SETUP_TOKEN}")
    return await browser.post(
        "/setup", {"token": SETUP_TOKEN, "password": PASSWORD, "password2": PASSWORD}
    )


@pytest.fixture
async def admin(anonymous: Browser) -> Browser:
    """Signed in: the setup token used to create the admin password."""
    response = await set_up(anonymous)
    assert response.status_code == 303, response.text
    await anonymous.get("/")
    return anonymous
