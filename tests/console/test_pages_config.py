"""The settings pages and their API: provider, secrets, settings, device accounts."""

from __future__ import annotations

from mailgate.config.store import Store
from mailgate.console.security import ADMIN_PASSWORD_SECRET
from mailgate.service import Gateway
from tests.console.conftest import CLIENT_ID, PAGES, PASSWORD, Browser


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
    # Console words: the field's label, not the CLI's --client-id; tied to its input.
    assert "Client ID: &#39;fad8cd81" in response.text
    assert "did you mean fad8cd81-a4a6-4e50-b186-5d84f6c275a5" in response.text
    assert "--client-id" not in response.text
    assert 'data-field="client_id"' in response.text
    assert store.values()["provider"] == "exchange-online"  # nothing saved


async def test_validation_errors_speak_the_readers_language(admin: Browser) -> None:
    await admin.get("/")
    await admin.post("/lang", {"lang": "zh-cn", "next": "/smtp"})
    await admin.get("/smtp")
    response = await admin.post(
        "/smtp", {"provider": "exchange-online-21vianet", "client_id": "not-a-guid"}
    )
    assert response.status_code == 400
    assert "客户端ID：&#39;not-a-guid&#39; 不是客户端ID" in response.text  # noqa: RUF001
    assert "--client-id" not in response.text


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
    bodies = [(await admin.get(f"/{name}")).text for name in PAGES]
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
