"""The manual's control-panel rule, provider switching, imports, and the typed view."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailgate.config.errors import NotConfiguredError, ValidationError
from mailgate.config.keys import SettingValue, defaults
from mailgate.config.model import Endpoint, SenderPolicy
from mailgate.config.presets import PRESETS, Security
from mailgate.config.rules import (
    build_settings,
    changes_for_provider,
    changes_for_set,
    displayed_values,
    validate_import,
)

from .conftest import GUID


def oauth_values(
    provider: str = "exchange-online", **extra: SettingValue
) -> dict[str, SettingValue]:
    values = {**defaults(), **changes_for_provider(defaults(), provider, client_id=GUID)}
    values.update(extra)
    return values


def none_values(**extra: SettingValue) -> dict[str, SettingValue]:
    return {**defaults(), "smtp.server": "mail.example.com:25", **extra}


@pytest.mark.parametrize(
    ("current", "key", "value", "expected"),
    [
        # Row 13: typing a server name on the control panel selects "Not specified".
        (
            oauth_values(),
            "smtp.server",
            "mail.example.com",
            {"smtp.server": "mail.example.com:587", "provider": "none"},
        ),
        (none_values(), "smtp.server", "relay:25", {"smtp.server": "relay:25"}),
        (oauth_values(), "smtp.server", "", {"smtp.server": ""}),
        (oauth_values(), "oauth.server", "127.0.0.1:2525", {"oauth.server": "127.0.0.1:2525"}),
        (oauth_values(), "smtp.security", "tls", {"smtp.security": "tls"}),
        (oauth_values(), "sender.policy", "pass-through", {"sender.policy": "pass-through"}),
    ],
)
def test_control_panel_rule(
    current: dict[str, SettingValue], key: str, value: str, expected: dict[str, SettingValue]
) -> None:
    assert changes_for_set(current, key, value) == expected


def test_oauth_keys_need_an_oauth_provider() -> None:
    with pytest.raises(ValidationError, match="mailgate config provider NAME"):
        changes_for_set(none_values(), "oauth.client_id", GUID)


def test_secrets_are_not_settings() -> None:
    with pytest.raises(ValidationError, match="secret"):
        changes_for_set(none_values(), "smtp.password", "x")


def test_setting_provider_by_key_applies_the_preset() -> None:
    changes = changes_for_set(none_values(), "provider", "outlook-com")
    assert changes["oauth.tenant"] == "consumers"
    assert changes["smtp.server"] == ""


@pytest.mark.parametrize("name", [n for n, p in PRESETS.items() if p.uses_oauth])
def test_oauth_preset_fills_every_field(name: str) -> None:
    preset = PRESETS[name]
    changes = changes_for_provider(none_values(), name, client_id=GUID)
    assert changes == {
        "provider": name,
        "oauth.server": f"{preset.smtp_host}:587",
        "oauth.host": preset.login_host,
        "oauth.tenant": preset.tenant,
        "oauth.scope": preset.scope,
        "oauth.client_id": GUID,
        "smtp.server": "",  # one outbound configuration
    }


def test_flags_override_the_preset_and_scope_still_checks_the_cloud() -> None:
    changes = changes_for_provider(
        defaults(),
        "exchange-online-21vianet",
        client_id=GUID,
        server="127.0.0.1:2525",
        host="127.0.0.1:4443",
        tenant="contoso.partner.onmschina.cn",
    )
    assert changes["oauth.server"] == "127.0.0.1:2525"
    assert changes["oauth.host"] == "127.0.0.1:4443"
    assert changes["oauth.tenant"] == "contoso.partner.onmschina.cn"
    assert changes["oauth.scope"] == PRESETS["exchange-online-21vianet"].scope
    with pytest.raises(
        ValidationError, match=r"--scope: .*https://partner\.outlook\.cn/SMTP\.Send"
    ):
        changes_for_provider(
            defaults(),
            "exchange-online-21vianet",
            server="127.0.0.1:2525",
            scope="https://outlook.office.com/SMTP.Send",
        )


def test_switching_provider_keeps_the_client_id() -> None:
    current = oauth_values("exchange-online")
    changes = changes_for_provider(current, "outlook-com")
    assert changes["oauth.client_id"] == GUID


@pytest.mark.parametrize(
    ("flags", "why"),
    [
        ({"client_id": "not-a-guid"}, "--client-id: 'not-a-guid' is not a client ID"),
        ({"server": "https://smtp.example"}, "--server"),
        ({"host": "login:99999"}, "--host"),
        ({"tenant": "x"}, "--tenant"),
    ],
)
def test_bad_flags_name_the_flag(flags: dict[str, str], why: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(why)):
        changes_for_provider(defaults(), "exchange-online", **flags)


def test_provider_none_takes_only_a_server() -> None:
    assert changes_for_provider(oauth_values(), "none") == {"provider": "none"}
    assert changes_for_provider(oauth_values(), "none", server="relay:25") == {
        "provider": "none",
        "smtp.server": "relay:25",
    }
    with pytest.raises(ValidationError, match="--client-id, --tenant apply only to OAuth"):
        changes_for_provider(defaults(), "none", client_id=GUID, tenant="common")
    with pytest.raises(ValidationError, match="Unknown provider 'gmail'"):
        changes_for_provider(defaults(), "gmail")


def test_show_leaves_the_plain_server_empty_with_oauth() -> None:
    stale = oauth_values(**{"smtp.server": "old.example:25"})
    assert displayed_values(stale)["smtp.server"] == ""
    assert displayed_values(none_values())["smtp.server"] == "mail.example.com:25"
    assert "smtp.password" not in displayed_values(stale)


def test_import_validates_everything_against_the_files_provider() -> None:
    incoming: dict[str, object] = {
        "provider": "exchange-online-21vianet",
        "oauth.scope": "https://partner.outlook.cn/SMTP.Send offline_access",
        "sender.allowed": ["a@contoso.cn"],
    }
    changes = validate_import(none_values(**{"smtp.server": ""}), incoming)
    assert changes["sender.allowed"] == ["a@contoso.cn"]
    with pytest.raises(ValidationError, match=r"smtp\.server is set but provider"):
        validate_import(none_values(), {"provider": "exchange-online"})


@pytest.mark.parametrize(
    ("incoming", "why"),
    [
        ({"smtp.password": "x"}, "secrets are never exported or imported"),
        ({"oauth.colour": "x"}, "Unknown setting"),
        ({"provider": "gmail"}, "Unknown provider"),
        (
            {"provider": "exchange-online", "oauth.scope": "https://partner.outlook.cn/SMTP.Send"},
            "oauth.scope",
        ),
    ],
)
def test_import_refuses(incoming: dict[str, object], why: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(why)):
        validate_import(defaults(), incoming)


def test_typed_view_of_an_oauth_provider(pem_file: Path) -> None:
    values = oauth_values(
        "exchange-online-21vianet",
        **{
            "oauth.server": "127.0.0.1:2525",
            "oauth.host": "127.0.0.1:4443",
            "network.ca_bundle": str(pem_file),
        },
    )
    settings = build_settings(values, env={})
    assert settings.outbound.server == Endpoint("127.0.0.1", 2525)
    assert settings.outbound.security is Security.STARTTLS
    assert settings.outbound.oauth is not None
    assert settings.outbound.oauth.authority == "https://127.0.0.1:4443/common"
    assert settings.outbound.oauth.msal_scopes == ["https://partner.outlook.cn/SMTP.Send", "email"]
    assert settings.trust.ca_bundle == pem_file
    assert settings.sender_policy is SenderPolicy.REWRITE
    # MAILGATE_CA_BUNDLE wins over the setting.
    assert build_settings(
        values, env={"MAILGATE_CA_BUNDLE": "/etc/ca.pem"}
    ).trust.ca_bundle == Path("/etc/ca.pem")


def test_typed_view_of_provider_none() -> None:
    extra: dict[str, SettingValue] = {
        "smtp.security": "tls",
        "smtp.username": "scanner",
        "sender.allowed": ["a@b.example"],
    }
    values = none_values(**extra)
    settings = build_settings(values, env={})
    assert settings.outbound.oauth is None
    assert settings.outbound.security is Security.TLS
    assert settings.outbound.username == "scanner"
    assert settings.sender_allowed == ("a@b.example",)


@pytest.mark.parametrize(
    ("values", "why"),
    [
        (defaults(), "No SMTP server is set"),
        (
            {**defaults(), **changes_for_provider(defaults(), "exchange-online")},
            "No client ID is set",
        ),
    ],
)
def test_typed_view_says_what_is_missing(values: dict[str, SettingValue], why: str) -> None:
    with pytest.raises(NotConfiguredError, match=why):
        build_settings(values, env={})
