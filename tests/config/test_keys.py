"""The setting validators, as tables of accepted and refused values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailgate.config.errors import ValidationError
from mailgate.config.keys import (
    KEYS,
    MANUAL_MISTYPED_GUID,
    defaults,
    get_key,
    normalize_login_host,
    normalize_server,
    parse_endpoint,
    validate_ca_bundle,
    validate_client_id,
    validate_email,
    validate_proxy_url,
    validate_scope,
    validate_setting,
    validate_tenant,
)
from mailgate.config.model import Endpoint
from mailgate.config.presets import PRESETS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("smtp.office365.com", Endpoint("smtp.office365.com", 587)),
        ("SMTP.Partner.Outlook.CN:587", Endpoint("smtp.partner.outlook.cn", 587)),
        ("127.0.0.1:2525", Endpoint("127.0.0.1", 2525)),
        (" mail.example.com:25 ", Endpoint("mail.example.com", 25)),
        ("[::1]:2525", Endpoint("::1", 2525)),
        ("::1", Endpoint("::1", 587)),
        ("localhost", Endpoint("localhost", 587)),
        ("bücher.example", Endpoint("bücher.example", 587)),
    ],
)
def test_endpoints_that_parse(text: str, expected: Endpoint) -> None:
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "not a host name"),
        ("smtp.office365.com:0", "port"),
        ("smtp.office365.com:65536", "port"),
        ("smtp.office365.com:abc", "port"),
        ("smtp.office365.com:", "port"),
        ("smtp://smtp.office365.com", "without a scheme"),
        ("https://login.microsoftonline.com/common", "without a scheme"),
        ("bad host", "not a host name"),
        ("-bad.example", "not a host name"),
        ("a" * 64 + ".example", "not a host name"),
        ("[smtp.example]:25", "IPv6"),
        ("[::1", "IPv6"),
    ],
)
def test_endpoints_that_do_not(text: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        parse_endpoint(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("smtp.office365.com", "smtp.office365.com:587"),
        ("127.0.0.1:2525", "127.0.0.1:2525"),
        ("[::1]:25", "[::1]:25"),
    ],
)
def test_servers_are_stored_with_their_port(text: str, expected: str) -> None:
    assert normalize_server(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("login.partner.microsoftonline.cn", "login.partner.microsoftonline.cn"),
        ("login.microsoftonline.com:443", "login.microsoftonline.com"),
        ("127.0.0.1:4443", "127.0.0.1:4443"),
    ],
)
def test_sign_in_host_keeps_only_a_non_default_port(text: str, expected: str) -> None:
    assert normalize_login_host(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fad8cd81-a4a6-4e50-b186-5d84f6c275a5", "fad8cd81-a4a6-4e50-b186-5d84f6c275a5"),
        ("FAD8CD81-A4A6-4E50-B186-5D84F6C275A5", "fad8cd81-a4a6-4e50-b186-5d84f6c275a5"),
        (" 00000000-0000-0000-0000-000000000000 ", "00000000-0000-0000-0000-000000000000"),
    ],
)
def test_client_ids_that_are_guids(text: str, expected: str) -> None:
    assert validate_client_id(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "my-app", "{fad8cd81-a4a6-4e50-b186-5d84f6c275a5}", "fad8cd81-a4a6-4e50-b186-5d84f6c275a"],
)
def test_client_ids_that_are_not(text: str) -> None:
    with pytest.raises(ValidationError, match="must be a GUID"):
        validate_client_id(text)


def test_the_manuals_mistyped_client_id_is_explained() -> None:
    with pytest.raises(ValidationError) as caught:
        validate_client_id(MANUAL_MISTYPED_GUID)
    message = str(caught.value)
    assert "did you mean fad8cd81-a4a6-4e50-b186-5d84f6c275a5" in message
    assert "vendor manual" in message


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("common", True),
        ("Organizations", True),
        ("consumers", True),
        ("72f988bf-86f1-41af-91ab-2d7cd011db47", True),
        ("contoso.onmicrosoft.com", True),
        ("contoso.partner.onmschina.cn", True),
        ("contoso", False),
        ("", False),
        ("common/oauth2", False),
    ],
)
def test_tenants(text: str, ok: bool) -> None:
    if ok:
        assert validate_tenant(text) == text.lower()
    else:
        with pytest.raises(ValidationError, match="not a tenant"):
            validate_tenant(text)


@pytest.mark.parametrize(
    ("provider", "scope", "ok"),
    [
        ("exchange-online", PRESETS["exchange-online"].scope, True),
        ("exchange-online", "https://outlook.office.com/smtp.send", True),
        ("outlook-com", "https://outlook.office.com/SMTP.Send offline_access", True),
        ("exchange-online-21vianet", "https://partner.outlook.cn/SMTP.Send offline_access", True),
        ("exchange-online-gcc-high", "https://outlook.office365.us/SMTP.Send", True),
        ("exchange-online-21vianet", "https://outlook.office.com/SMTP.Send offline_access", False),
        ("exchange-online", "https://partner.outlook.cn/SMTP.Send", False),
        ("exchange-online", "offline_access openid email", False),
        ("exchange-online", "https://outlook.office.com/Mail.Send", False),
        ("exchange-online", "SMTP.Send", False),
    ],
)
def test_scope_must_send_in_the_providers_cloud(provider: str, scope: str, ok: bool) -> None:
    preset = PRESETS[provider]
    if ok:
        assert validate_scope(scope, preset) == scope
    else:
        with pytest.raises(ValidationError, match=f"{preset.smtp_resource}/SMTP.Send"):
            validate_scope(scope, preset)


def test_scope_from_another_cloud_is_named() -> None:
    with pytest.raises(ValidationError, match="belongs to another cloud"):
        validate_scope("https://outlook.office.com/SMTP.Send", PRESETS["exchange-online-21vianet"])


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("scanner@contoso.com", True),
        ("first.last+tag@contoso.partner.onmschina.cn", True),
        ("no-at-sign.example", False),
        ("two@@contoso.com", False),
        ("user@localhost", False),
        (".dot@contoso.com", False),
        ("a..b@contoso.com", False),
        ("space here@contoso.com", False),
        ("user@", False),
    ],
)
def test_email_addresses(text: str, ok: bool) -> None:
    if ok:
        assert validate_email(text) == text
    else:
        with pytest.raises(ValidationError, match="not an e-mail address"):
            validate_email(text)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("http://proxy.example.com:3128", None),
        ("https://10.0.0.1", None),
        ("", None),
        ("socks5://proxy:1080", "not a proxy URL"),
        ("proxy.example.com:3128", "not a proxy URL"),
        ("http://proxy.example.com:99999", "not a proxy URL"),
        ("http://user:secret@proxy.example.com:3128", "no password"),
    ],
)
def test_proxy_urls(text: str, why: str | None) -> None:
    if why is None:
        assert validate_proxy_url(text) == text
    else:
        with pytest.raises(ValidationError, match=why):
            validate_proxy_url(text)


def test_ca_bundle_must_hold_a_certificate(pem_file: Path, tmp_path: Path) -> None:
    assert validate_ca_bundle(str(pem_file)) == str(pem_file)
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    with pytest.raises(ValidationError, match="no PEM certificate"):
        validate_ca_bundle(str(not_pem))
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(ValidationError, match="no PEM certificate"):
        validate_ca_bundle(str(broken))
    with pytest.raises(ValidationError, match="Cannot read"):
        validate_ca_bundle(str(tmp_path / "missing.pem"))


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("smtp.security", "STARTTLS", "starttls"),
        ("sender.policy", "allow-list", "allow-list"),
        ("sender.allowed", "a@contoso.com, b@contoso.com", ["a@contoso.com", "b@contoso.com"]),
        ("sender.allowed", ["a@contoso.com"], ["a@contoso.com"]),
        ("sender.allowed", "", []),
        ("sender.address", "", ""),
        ("oauth.client_id", "", ""),
        ("provider", "outlook-com", "outlook-com"),
    ],
)
def test_validate_setting_normalises(name: str, value: object, expected: object) -> None:
    assert validate_setting(name, value, "exchange-online") == expected


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("smtp.security", "ssl", "not one of: none, starttls, tls"),
        ("sender.policy", "", "not one of"),
        ("provider", "gmail", "not one of"),
        ("sender.allowed", "a@contoso.com, nope", "sender.allowed: 'nope'"),
        ("sender.allowed", 3, "list of text"),
        ("smtp.server", ["a"], "text value"),
        ("no.such.key", "x", "Valid keys: provider, oauth.server"),
    ],
)
def test_validate_setting_refuses(name: str, value: object, why: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(why)):
        validate_setting(name, value, "exchange-online")


def test_scope_is_checked_against_the_provider_given() -> None:
    scope = "https://partner.outlook.cn/SMTP.Send offline_access"
    assert validate_setting("oauth.scope", scope, "exchange-online-21vianet") == scope
    with pytest.raises(ValidationError, match=r"oauth\.scope: "):
        validate_setting("oauth.scope", scope, "exchange-online")


def test_every_key_is_documented_and_has_a_sane_default() -> None:
    for key in KEYS.values():
        assert key.help.endswith("."), key.name
        if key.choices:
            assert key.default in key.choices
    assert get_key("smtp.password").secret
    assert "smtp.password" not in defaults()
    assert defaults()["sender.policy"] == "rewrite"
