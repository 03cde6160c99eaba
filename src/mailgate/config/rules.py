"""How settings change together, and the typed view built from them.

Theory of operation: the store holds a flat mapping of dotted keys. A change the admin
asks for (`config set`, `config provider`, an import) is turned by the pure functions here
into the full set of keys to write, following the vendor manual's control panel: there
is ONE outbound configuration. Typing a server name on the control panel — `config set
smtp.server` — switches the provider to `none`; choosing an OAuth provider fills the
oauth.* fields from its preset (flags override) and empties the plain server field, which
`config show` therefore shows empty.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from mailgate.config.errors import NotConfiguredError, ValidationError
from mailgate.config.keys import (
    DEFAULT_SMTP_PORT,
    KEYS,
    SettingValue,
    get_key,
    normalize_login_host,
    normalize_server,
    parse_endpoint,
    validate_client_id,
    validate_scope,
    validate_setting,
    validate_tenant,
)
from mailgate.config.model import (
    UNCONFIGURED_OUTBOUND,
    ConsoleConfig,
    DeliveryConfig,
    ListenerConfig,
    OAuthConfig,
    OutboundConfig,
    SenderPolicy,
    Settings,
    TrustConfig,
)
from mailgate.config.presets import PRESETS, Preset, Security

Values = Mapping[str, SettingValue]
ENV_CA_BUNDLE = "MAILGATE_CA_BUNDLE"


def _preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValidationError(
            f"Unknown provider {name!r}; choose one of: {', '.join(PRESETS)}."
        ) from None


def uses_oauth(values: Values) -> bool:
    preset = PRESETS.get(str(values.get("provider", "none")))
    return preset is not None and preset.uses_oauth


def changes_for_set(current: Values, name: str, raw: object) -> dict[str, SettingValue]:
    """The keys to write when the admin sets `name` (not a secret) to `raw`."""
    key = get_key(name)
    if key.secret:
        raise ValidationError(
            f"{name} is a secret; the store keeps it encrypted apart from settings."
        )
    if name == "provider":
        return changes_for_provider(current, str(raw))
    provider = str(current.get("provider", "none"))
    if name.startswith("oauth.") and not uses_oauth(current):
        raise ValidationError(
            f"{name} applies only to an OAuth provider and the provider is {provider}. "
            "Choose one first: `mailgate config provider NAME`."
        )
    value = validate_setting(name, raw, provider)
    changes: dict[str, SettingValue] = {name: value}
    if name == "smtp.server" and value and provider != "none":
        changes["provider"] = "none"  # the manual's control-panel rule
    return changes


def changes_for_provider(
    current: Values,
    name: str,
    *,
    client_id: str | None = None,
    server: str | None = None,
    host: str | None = None,
    tenant: str | None = None,
    scope: str | None = None,
) -> dict[str, SettingValue]:
    """The keys to write when the admin chooses provider `name`, with optional overrides."""
    preset = _preset(name.strip().lower())
    if not preset.uses_oauth:
        flags = {"--client-id": client_id, "--host": host, "--tenant": tenant, "--scope": scope}
        given = [flag for flag, value in flags.items() if value is not None]
        if given:
            raise ValidationError(
                f"{', '.join(given)} apply only to OAuth providers; provider none takes "
                "--server host[:port] (and `config set smtp.username/smtp.password`)."
            )
        changes: dict[str, SettingValue] = {"provider": preset.name}
        if server is not None:
            changes["smtp.server"] = _field("--server", normalize_server, server)
        return changes
    default_server = f"{preset.smtp_host}:{preset.smtp_port or DEFAULT_SMTP_PORT}"
    kept_client_id = str(current.get("oauth.client_id", ""))  # the admin's own app: kept
    return {
        "provider": preset.name,
        "oauth.server": _field("--server", normalize_server, server or default_server),
        "oauth.host": _field("--host", normalize_login_host, host or preset.login_host),
        "oauth.tenant": _field("--tenant", validate_tenant, tenant or preset.tenant),
        # Checked against the preset's cloud even when --server/--host point elsewhere.
        "oauth.scope": _field(
            "--scope", lambda s: validate_scope(s, preset), scope or preset.scope
        ),
        "oauth.client_id": _field("--client-id", validate_client_id, client_id)
        if client_id is not None
        else kept_client_id,
        "smtp.server": "",  # only one SMTP server can be set
    }


def _field(flag: str, parse: Callable[[str], str], text: str) -> str:
    try:
        return parse(text)
    except ValidationError as error:
        raise error.in_field(flag) from None


def validate_import(current: Values, incoming: Mapping[str, object]) -> dict[str, SettingValue]:
    """Validate a whole set of settings (an import) and return the keys to write.

    Keys absent from `incoming` keep their current values. The result must satisfy the
    one-outbound-configuration rule as it stands, since an import is not a control panel.
    """
    unknown = [k for k in incoming if k not in KEYS]
    if unknown:
        raise ValidationError(
            f"Unknown setting(s) {', '.join(unknown)}. Valid keys: {', '.join(KEYS)}."
        )
    secret = [k for k in incoming if KEYS[k].secret]
    if secret:
        raise ValidationError(
            f"{', '.join(secret)} cannot be imported: secrets are never exported or imported. "
            "Remove them from the file and set them with `mailgate config set KEY -`."
        )
    provider = str(incoming.get("provider", current.get("provider", "none")))
    _preset(provider)
    changes = {name: validate_setting(name, value, provider) for name, value in incoming.items()}
    merged = {**current, **changes}
    if uses_oauth(merged) and merged.get("smtp.server"):
        raise ValidationError(
            f"smtp.server is set but provider {provider} uses OAuth, whose server is oauth.server. "
            'Empty smtp.server in the file, or set provider = "none".'
        )
    return changes


def displayed_values(values: Values) -> dict[str, SettingValue]:
    """Settings as `config show` presents them: with OAuth the plain server field is empty."""
    shown = {name: values.get(name, KEYS[name].default) for name in KEYS if not KEYS[name].secret}
    if uses_oauth(values):
        shown["smtp.server"] = ""
    return shown


def build_settings(
    values: Values, env: Mapping[str, str], allow_incomplete: bool = False
) -> Settings:
    """The typed view (model.Settings) of stored values; raises NotConfiguredError when the
    outbound side is incomplete, unless *allow_incomplete* (then `configured` is False)."""
    # MAILGATE_CA_BUNDLE wins over the setting, as environment variables usually do.
    ca_bundle = env.get(ENV_CA_BUNDLE) or str(values.get("network.ca_bundle", ""))
    allowed = values.get("sender.allowed", [])
    try:
        outbound, missing = _outbound(values), ""
    except NotConfiguredError as error:
        if not allow_incomplete:
            raise
        outbound, missing = UNCONFIGURED_OUTBOUND, str(error)
    return Settings(
        outbound=outbound,
        configured=not missing,
        missing=missing,
        trust=TrustConfig(
            ca_bundle=Path(ca_bundle) if ca_bundle else None,
            https_proxy=str(values.get("network.https_proxy", "")) or None,
        ),
        sender_address=str(values.get("sender.address", "")) or None,
        sender_policy=SenderPolicy(str(values.get("sender.policy") or SenderPolicy.REWRITE)),
        sender_allowed=tuple(allowed) if isinstance(allowed, list) else (),
        listener=_listener(values),
        delivery=_delivery(values),
        console=_console(values),
    )


def _console(values: Values) -> ConsoleConfig:
    base = ConsoleConfig()
    cert, key = values.get("console.tls_cert", ""), values.get("console.tls_key", "")
    return ConsoleConfig(
        bind=str(values.get("console.bind") or base.bind),
        port=_number(values, "console.port") or base.port,
        tls=values.get("console.tls") == "yes",
        tls_cert=Path(cert) if isinstance(cert, str) and cert else None,
        tls_key=Path(key) if isinstance(key, str) and key else None,
        language=str(values.get("console.language") or base.language),
    )


def _number(values: Values, key: str) -> int | None:
    text = values.get(key, "")
    return int(text) if isinstance(text, str) and text.strip() else None


def _listener(values: Values) -> ListenerConfig:
    base = ListenerConfig()
    networks = values.get("listener.networks")
    cert, key = values.get("listener.tls_cert", ""), values.get("listener.tls_key", "")
    return ListenerConfig(
        bind=str(values.get("listener.bind") or base.bind),
        port=_number(values, "listener.port") or base.port,
        tls_port=_number(values, "listener.tls_port"),
        networks=tuple(networks) if isinstance(networks, list) else base.networks,
        tls_cert=Path(cert) if isinstance(cert, str) and cert else None,
        tls_key=Path(key) if isinstance(key, str) and key else None,
        auth_required=values.get("listener.auth_required") == "yes",
        auth_plaintext=values.get("listener.auth_plaintext") == "yes",
        max_message_size=_number(values, "listener.max_message_size") or base.max_message_size,
        max_recipients=_number(values, "listener.max_recipients") or base.max_recipients,
        max_connections=_number(values, "listener.max_connections") or base.max_connections,
    )


def _delivery(values: Values) -> DeliveryConfig:
    base = DeliveryConfig()
    lifetime = _number(values, "delivery.max_queue_lifetime")
    return DeliveryConfig(
        connections=_number(values, "delivery.connections") or base.connections,
        messages_per_minute=_number(values, "delivery.messages_per_minute")
        or base.messages_per_minute,
        recipients_per_day=_number(values, "delivery.recipients_per_day")
        or base.recipients_per_day,
        max_queue_lifetime=float(lifetime) if lifetime else base.max_queue_lifetime,
    )


def _outbound(values: Values) -> OutboundConfig:
    provider = str(values.get("provider", "none"))
    preset = _preset(provider)
    if not preset.uses_oauth:
        server_text = str(values.get("smtp.server", ""))
        if not server_text:
            raise NotConfiguredError(
                "No SMTP server is set. Run `mailgate config set smtp.server HOST[:PORT]` "
                "or choose a provider with `mailgate config provider NAME`."
            )
        security = Security(str(values.get("smtp.security") or Security.STARTTLS))
        username = str(values.get("smtp.username", "")) or None
        return OutboundConfig(provider, parse_endpoint(server_text), security, None, username)
    client_id = str(values.get("oauth.client_id", ""))
    if not client_id:
        raise NotConfiguredError(
            f"No client ID is set. Run `mailgate config provider {provider} --client-id "
            "<Application (client) ID of your app registration>`."
        )
    oauth = OAuthConfig(
        login_host=str(values.get("oauth.host") or preset.login_host),
        tenant=str(values.get("oauth.tenant") or preset.tenant),
        client_id=client_id,
        scope=str(values.get("oauth.scope") or preset.scope),
    )
    server_text = str(values.get("oauth.server") or f"{preset.smtp_host}:{preset.smtp_port}")
    return OutboundConfig(provider, parse_endpoint(server_text), preset.security, oauth)
