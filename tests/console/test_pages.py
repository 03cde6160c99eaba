"""The pages and API do what the manual's web UI does: provider, wizard, queue, languages."""

from __future__ import annotations

import asyncio
import time

import pytest

from mailgate.config.store import Store
from mailgate.console.security import ADMIN_PASSWORD_SECRET
from mailgate.gateway.queue import State
from mailgate.gateway.queue_schema import Incoming
from mailgate.service import Gateway
from mailgate.sim.server import SimulatorThread
from tests.console.conftest import CLIENT_ID, PASSWORD, Browser

PAGES = [
    "/",
    "/smtp",
    "/signin",
    "/device",
    "/sender",
    "/inbound",
    "/queue",
    "/events",
    "/test",
    "/settings",
]


async def test_every_page_renders(admin: Browser) -> None:
    for page in PAGES:
        response = await admin.get(page)
        assert response.status_code == 200, (page, response.text[:500])


async def test_health_ready_and_metrics(admin: Browser, gateway: Gateway) -> None:
    assert (await admin.http.get("/healthz")).json() == {"status": "ok"}
    ready = await admin.http.get("/readyz")
    assert ready.status_code == 503  # nobody signed in yet
    assert "signed in" in ready.json()["reason"]
    gateway.queue.accept(
        Incoming("a@contoso.com", ("b@contoso.com",), b"Subject: x\r\n\r\nx"), time.time()
    )
    metrics = (await admin.http.get("/metrics")).text
    assert 'mailgate_queue_depth{state="queued"} 1.0' in metrics
    assert "mailgate_queue_oldest_age_seconds" in metrics
    assert "mailgate_messages_accepted_total 1.0" in metrics


async def test_provider_save_shows_validation_errors(admin: Browser, store: Store) -> None:
    await admin.get("/smtp")
    response = await admin.post(
        "/smtp",
        {
            "provider": "exchange-online-21vianet",
            "client_id": "fad8cd81-a4a6-4e50-b1865d84f6c275a5",
        },
    )
    assert response.status_code == 400
    assert 'id="error"' in response.text
    assert "GUID" in response.text
    assert store.values()["provider"] == "exchange-online"  # nothing saved


async def test_provider_save_leads_to_the_wizard(admin: Browser, store: Store) -> None:
    await admin.get("/smtp")
    response = await admin.post(
        "/smtp",
        {"provider": "exchange-online-21vianet", "client_id": CLIENT_ID, "server": "", "host": ""},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/signin"
    assert store.values()["oauth.host"] == "login.partner.microsoftonline.cn"
    page = await admin.get("/smtp")
    assert (
        "login.partner.microsoftonline.cn/common/adminconsent?client_id=" + CLIENT_ID in page.text
    )
    wizard = await admin.get("/signin")
    assert 'id="wizard-next"' in wizard.text


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


async def test_queue_actions_from_pages_and_api(admin: Browser, gateway: Gateway) -> None:
    message = gateway.queue.accept(
        Incoming("a@x.com", ("b@x.com",), b"Subject: hi\r\n\r\nx"), time.time()
    )
    listing = await admin.get("/queue?state=queued")
    assert f'id="message-{message}"' in listing.text
    await admin.get(f"/queue/{message}")
    assert (await admin.post(f"/queue/{message}/hold")).status_code == 303
    info = gateway.queue.get(message)
    assert info is not None
    assert info.state is State.HELD
    response = await admin.api("POST", f"/api/queue/{message}/release")
    assert response.json() == {"changed": True}
    detail = (await admin.http.get(f"/api/queue/{message}")).json()
    assert detail["state"] == "queued"
    assert any("held" in h["text"] for h in detail["history"])
    assert (await admin.api("DELETE", f"/api/queue/{message}")).status_code == 200
    assert gateway.queue.get(message) is None


async def test_secrets_are_write_only(admin: Browser, store: Store) -> None:
    await admin.get("/smtp")
    secret = "hunter2-smtp-password"
    response = await admin.post(
        "/smtp",
        {
            "provider": "none",
            "smtp_server": "mail.example.com:587",
            "smtp_username": "u",
            "smtp_password": secret,
        },
    )
    assert response.status_code == 303
    assert store.secret("smtp.password") == secret
    hash_ = store.secret(ADMIN_PASSWORD_SECRET)
    assert hash_ is not None
    bodies = [(await admin.get(p)).text for p in PAGES]
    bodies += [
        (await admin.http.get(p)).text for p in ("/api/smtp", "/api/settings", "/api/status")
    ]
    for body in bodies:
        assert secret not in body
        assert hash_ not in body
        assert PASSWORD not in body
    assert "(set)" in (await admin.get("/smtp")).text


async def test_settings_api_validates(admin: Browser, store: Store) -> None:
    bad = await admin.api("PATCH", "/api/settings", {"sender.address": "not an address"})
    assert bad.status_code == 400
    assert "e-mail address" in bad.json()["error"]
    ok = await admin.api("PATCH", "/api/settings", {"sender.policy": "allow-list"})
    assert ok.status_code == 200
    assert store.values()["sender.policy"] == "allow-list"
    schema = (await admin.http.get("/api/openapi.json")).json()
    assert "/api/queue/{message_id}" in schema["paths"]


async def test_device_accounts(admin: Browser, gateway: Gateway) -> None:
    await admin.get("/inbound")
    added = await admin.post(
        "/inbound/devices", {"username": "printer", "password": "long enough pw", "note": "2F"}
    )
    assert added.status_code == 303
    assert [d.username for d in gateway.devices.list()] == ["printer"]
    page = await admin.get("/inbound")
    assert 'id="device-printer"' in page.text
    assert "long enough pw" not in page.text
    await admin.post("/inbound/devices/printer/remove")
    assert gateway.devices.list() == []


async def test_test_send_queues_a_message(admin: Browser, store: Store, gateway: Gateway) -> None:
    store.set("sender.address", "scanner@contoso.com")
    await admin.get("/test")
    response = await admin.post("/test", {"to": "b@contoso.com", "subject": "hi", "body": "x"})
    assert response.status_code == 303
    infos = gateway.queue.messages()
    assert infos[0].subject == "hi"
    assert infos[0].envelope_from == "scanner@contoso.com"


@pytest.mark.parametrize(
    ("page", "chinese"),
    [
        ("/smtp", "服务提供商"),
        ("/smtp", "客户端ID"),
        ("/signin", "输入身份验证代码"),
        ("/device", "设备详细信息"),
        ("/", "状态"),
    ],
)
async def test_chinese_console(admin: Browser, page: str, chinese: str) -> None:
    await admin.get("/")
    switched = await admin.post("/lang", {"lang": "zh-CN", "next": page})
    assert switched.status_code == 303
    response = await admin.get(page)
    assert chinese in response.text
    assert 'lang="zh-CN"' in response.text


async def test_language_default_comes_from_the_setting(admin: Browser, store: Store) -> None:
    store.set("console.language", "zh-CN")
    assert "下一步" in (await admin.get("/signin")).text


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("subject", "Scan\r\nBcc: victim@fabrikam.test", "Subject"),
        ("to", "a@contoso.com\r\nBcc: victim@fabrikam.test", "To"),
        ("to", "Evil\nName <a@contoso.com>", "To"),
    ],
)
async def test_test_send_refuses_header_injection(
    admin: Browser, store: Store, gateway: Gateway, field: str, value: str, named: str
) -> None:
    store.set("sender.address", "scanner@contoso.com")
    fields = {"to": "a@contoso.com", "subject": "test", "body": "hi", field: value}
    response = await admin.api("POST", "/api/test-send", fields)
    assert response.status_code == 400
    assert named in response.json()["error"]
    assert gateway.queue.messages() == []
    bad = await admin.api("PATCH", "/api/settings", {"sender.address": "a@b.test\r\nBcc: x@y.test"})
    assert bad.status_code == 400
