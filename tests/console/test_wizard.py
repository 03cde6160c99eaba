"""The sign-in wizard against the simulator: success, and failures explained."""

from __future__ import annotations

import asyncio
import time

import pytest

from mailgate.config.store import Store
from mailgate.gateway.queue_schema import Incoming
from mailgate.service import Gateway
from mailgate.sim.server import SimulatorThread
from tests.console.conftest import CLIENT_ID, Browser


async def _wait_status(admin: Browser, wanted: set[str]) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        state: dict[str, object] = (await admin.http.get("/api/signin")).json()
        if state["status"] in wanted:
            return state
        await asyncio.sleep(0.1)
    raise AssertionError(f"wizard never reached {wanted}")


async def test_wizard_signs_in_against_the_simulator(
    admin: Browser, sim: SimulatorThread, store: Store, gateway: Gateway
) -> None:
    held = gateway.queue.accept(
        Incoming("a@x.com", ("b@x.com",), b"Subject: x\r\n\r\nx"), time.time()
    )
    gateway.queue.hold(held, time.time(), "sign-in needed")
    await admin.get("/signin")
    assert (await admin.post("/signin/start")).status_code == 303
    state = await _wait_status(admin, {"waiting"})
    assert state["user_code"]
    page = await admin.get("/signin")
    assert str(state["user_code"]) in page.text
    assert 'src="/static/wizard.js"' in page.text
    qr = await admin.http.get("/signin/qr.svg")
    assert qr.headers["content-type"].startswith("image/svg+xml")
    await asyncio.to_thread(sim.sign_in, str(state["user_code"]), "scanner@contoso.com", True)
    done = await _wait_status(admin, {"signed_in", "failed"})
    assert done["status"] == "signed_in", done
    assert done["upn"] == "scanner@contoso.com"
    success = await admin.get("/signin")
    assert 'id="wizard-success"' in success.text
    account = store.account()
    assert account is not None
    assert account.upn == "scanner@contoso.com"
    status = (await admin.http.get("/api/status")).json()
    assert status["upn"] == "scanner@contoso.com"
    assert (await admin.http.get("/readyz")).status_code == 200


@pytest.mark.parametrize(
    ("scenario", "kind"),
    [
        ({"consent_required": "admin"}, "consent"),
        ({"conditional_access_block": True}, "policy"),
        ({"user_declines": True}, "declined"),
    ],
)
async def test_wizard_explains_failures(
    admin: Browser, sim: SimulatorThread, scenario: dict[str, object], kind: str
) -> None:
    sim.set_scenario(poll_interval=1, **scenario)
    await admin.get("/signin")
    await admin.post("/signin/start")
    state = await _wait_status(admin, {"waiting", "failed"})
    if state["status"] == "waiting":
        await asyncio.to_thread(sim.sign_in, str(state["user_code"]), "scanner@contoso.com", True)
        state = await _wait_status(admin, {"failed", "signed_in"})
    assert state["status"] == "failed", state
    page = await admin.get("/signin")
    assert f'data-kind="{kind}"' in page.text, state["problem"]
    if kind == "consent":
        assert "adminconsent?client_id=" + CLIENT_ID in page.text
    assert 'id="wizard-retry"' in page.text
