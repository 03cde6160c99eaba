"""Every setting key: its type, default, help text, secret flag and validation.

The settings store keeps dotted keys with JSON values (a string, or a list of strings for
`sender.allowed`). This table is the one place that knows them; `config set`, `config
show`, export/import and the console all go through it. Validators are pure functions:
they take what a person typed and return the normalised value, or raise ValidationError
with a message that says what is expected.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mailgate.config.errors import ValidationError
from mailgate.config.model import (
    DEFAULT_ALLOWED_NETWORKS,
    DEFAULT_MAX_MESSAGE_SIZE,
    Endpoint,
    SenderPolicy,
)
from mailgate.config.presets import PRESETS, Preset, Security
from mailgate.texts import N_

#: A stored setting value: JSON text or a JSON list of text.
SettingValue = str | list[str]

DEFAULT_SMTP_PORT = 587
SENDER_POLICIES = tuple(p.value for p in SenderPolicy)
WELL_KNOWN_TENANTS = ("common", "organizations", "consumers")
#: The client ID printed in the vendor manual's admin-consent URL, one hyphen short.
MANUAL_MISTYPED_GUID = "fad8cd81-a4a6-4e50-b1865d84f6c275a5"

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# --- validators ---------------------------------------------------------------------------


def valid_hostname(host: str) -> bool:
    """A DNS name (IDN allowed) or an IP address literal."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return False
    ascii_host = ascii_host.removesuffix(".")
    labels = ascii_host.split(".")
    return 0 < len(ascii_host) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


def _parse_port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValidationError.of(
            N_("{value} has no valid port: give a number from 1 to 65535 after the colon."),
            value=repr(whole),
        )
    return int(text)


def parse_endpoint(text: str, default_port: int = DEFAULT_SMTP_PORT) -> Endpoint:
    """host[:port], [IPv6]:port or a bare IPv6 address; the port defaults to `default_port`."""
    value = text.strip()
    if "://" in value or "/" in value:
        raise ValidationError.of(
            N_("{value}: give only host[:port], without a scheme such as https:// or a path."),
            value=repr(value),
        )
    if value.startswith("["):
        match = re.fullmatch(r"\[([^\]]+)\](?::(.*))?", value)
        if not match:
            raise ValidationError.of(
                N_("{value} is not host[:port]; write an IPv6 address as [2001:db8::1]:587."),
                value=repr(value),
            )
        host, port_text = match.group(1), match.group(2)
        if ":" not in host or not valid_hostname(host):
            raise ValidationError.of(
                N_("{value}: brackets are for IPv6 addresses only."), value=repr(value)
            )
    elif value.count(":") > 1:  # a bare IPv6 address cannot carry a port
        host, port_text = value, None
    else:
        host, _, port_text = value.partition(":")
        port_text = port_text if ":" in value else None
    if not host or not valid_hostname(host):
        raise ValidationError.of(
            N_(
                "{value} is not a host name or IP address; "
                "expected host[:port], e.g. smtp.office365.com:587."
            ),
            value=repr(value),
        )
    port = default_port if port_text is None else _parse_port(port_text, value)
    return Endpoint(host.lower(), port)


def normalize_server(text: str) -> str:
    """An SMTP server as stored: always with its port (587 unless given)."""
    return str(parse_endpoint(text, DEFAULT_SMTP_PORT))


def normalize_login_host(text: str) -> str:
    """The sign-in host as stored: host, or host:port when a port was given (443 is implied)."""
    endpoint = parse_endpoint(text, 443)
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    return host if endpoint.port == 443 else f"{host}:{endpoint.port}"


def validate_client_id(text: str) -> str:
    value = text.strip()
    if _GUID.fullmatch(value):
        return value.lower()
    bare = value.replace("-", "")
    if len(bare) == 32 and all(c in "0123456789abcdefABCDEF" for c in bare):
        fixed = f"{bare[:8]}-{bare[8:12]}-{bare[12:16]}-{bare[16:20]}-{bare[20:]}".lower()
        misplaced = N_(
            "{value} is not a client ID: the hyphens are misplaced; did you mean {fixed}?"
        )
        if value.lower() == MANUAL_MISTYPED_GUID:
            misplaced = N_(
                "{value} is not a client ID: it is the vendor manual's example from its "
                "consent URL, which is mistyped; did you mean {fixed}?"
            )
        raise ValidationError.of(misplaced, value=repr(value), fixed=fixed)
    raise ValidationError.of(
        N_(
            "{value} is not a client ID: it must be a GUID such as "
            "0a1b2c3d-4e5f-6789-abcd-ef0123456789 — the Application (client) ID of your app "
            "registration in Entra ID. Copy it from the app's Overview page."
        ),
        value=repr(value),
    )


def validate_tenant(text: str) -> str:
    value = text.strip().lower()
    if value in WELL_KNOWN_TENANTS or _GUID.fullmatch(value):
        return value
    if "." in value and valid_hostname(value):
        return value
    raise ValidationError.of(
        N_(
            "{value} is not a tenant: use common, organizations, consumers, your tenant ID "
            "(a GUID) or one of its domains such as contoso.onmicrosoft.com."
        ),
        value=repr(text),
    )


def validate_scope(text: str, preset: Preset) -> str:
    """The scope must ask for SMTP.Send on the resource of the chosen cloud."""
    value = " ".join(text.split())
    wanted = f"{preset.smtp_resource}/SMTP.Send"
    if wanted.lower() in (s.lower() for s in value.split()):
        return value
    others = sorted(
        {p.smtp_resource for p in PRESETS.values() if p.smtp_resource} - {preset.smtp_resource}
    )
    wrong_cloud = [r for r in others if f"{r}/smtp.send" in value.lower()]
    params = {"value": repr(value), "wanted": wanted, "example": repr(preset.scope)}
    if wrong_cloud:
        text = N_(
            "The scope {value} does not contain {wanted}, which this provider needs to send "
            "mail. {other} belongs to another cloud. Use e.g. {example}."
        )
        raise ValidationError.of(text, other=wrong_cloud[0], **params)
    text = N_(
        "The scope {value} does not contain {wanted}, which this provider needs to send "
        "mail. Use e.g. {example}."
    )
    raise ValidationError.of(text, **params)


def validate_email(text: str) -> str:
    value = text.strip()
    local, at, domain = value.rpartition("@")
    if (
        at
        and _LOCAL_PART.fullmatch(local)
        and not local.startswith(".")
        and ".." not in local
        and "." in domain
        and valid_hostname(domain)
    ):
        return value
    raise ValidationError.of(
        N_("{value} is not an e-mail address; expected name@example.com."), value=repr(text)
    )


def validate_optional_email(text: str) -> str:
    return validate_email(text) if text.strip() else ""


def validate_username(text: str) -> str:
    if _CONTROL.search(text):
        raise ValidationError.of(N_("The user name contains control characters; type it again."))
    return text.strip()


def validate_proxy_url(text: str) -> str:
    value = text.strip()
    if not value:
        return ""
    parts = urlsplit(value)
    try:
        _ = parts.port  # raises ValueError on a port that is not a number in range
        ok = parts.scheme in {"http", "https"} and valid_hostname(parts.hostname or "")
    except ValueError:
        ok = False
    if not ok:
        raise ValidationError.of(
            N_("{value} is not a proxy URL; expected http://proxy.example.com:3128."),
            value=repr(text),
        )
    if parts.password is not None:
        # Settings are stored in clear: a password here would show in exports and `config show`.
        raise ValidationError.of(
            N_(
                "Put no password in the proxy URL: settings are not encrypted. "
                "Let the proxy allow this host by its address instead."
            )
        )
    return value


def validate_ca_bundle(text: str) -> str:
    """A readable PEM file with at least one certificate; stored as an absolute path."""
    value = text.strip()
    if not value:
        return ""
    from cryptography import x509  # only needed here; keeps `mailgate --help` quick

    path = Path(value).expanduser().absolute()
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ValidationError.of(
            N_("Cannot read the CA bundle {path}: {reason}. Give the path of a readable PEM file."),
            path=str(path),
            reason=str(error.strerror),
        ) from None
    try:
        found = (
            x509.load_pem_x509_certificates(data) if b"-----BEGIN CERTIFICATE-----" in data else []
        )
    except ValueError:
        found = []
    if not found:
        raise ValidationError.of(
            N_(
                "{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----). "
                "Give a PEM file of CA certificates."
            ),
            path=str(path),
        )
    return str(path)


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def check(text: str) -> str:
        value = text.strip().lower()
        if value not in options:
            raise ValidationError.of(
                N_("{value} is not one of: {options}."),
                value=repr(text),
                options=", ".join(options),
            )
        return value

    return check


def _any_text(text: str) -> str:
    return text


def _int_range(low: int, high: int) -> Callable[[str], str]:
    def check(text: str) -> str:
        try:
            number = int(text.strip())
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            raise ValidationError.of(
                N_("{value} is not a whole number from {low} to {high}."),
                value=repr(text),
                low=str(low),
                high=str(high),
            )
        return str(number)

    return check


def validate_size(text: str) -> str:
    """Bytes, or with a unit: 35M, 35MB, 512K; stored as bytes."""
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)[bB]?\s*", text)
    if match is None:
        raise ValidationError.of(
            N_("{value} is not a size; write e.g. 35M or 36700160."), value=repr(text)
        )
    factor = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2).lower()]
    size = int(match.group(1)) * factor
    if not 1024 <= size <= 1024**3:
        raise ValidationError.of(N_("{value}: choose a size from 1K to 1G."), value=repr(text))
    return str(size)


def validate_duration(text: str) -> str:
    """Seconds, or with a unit: 90m, 12h, 5d; stored as seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text.lower())
    if match is None:
        raise ValidationError.of(
            N_("{value} is not a duration; write e.g. 5d, 12h or 90m."), value=repr(text)
        )
    seconds = int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    if not 3600 <= seconds <= 30 * 86400:
        raise ValidationError.of(N_("{value}: choose from 1h to 30d."), value=repr(text))
    return str(seconds)


def validate_network(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        raise ValidationError.of(
            N_("{value} is not a network; write it like 192.168.1.0/24 or 10.0.0.7."),
            value=repr(text),
        ) from None


def validate_bind(text: str) -> str:
    value = text.strip()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        if valid_hostname(value):
            return value
        raise ValidationError.of(
            N_("{value} is not an address to listen on; use 0.0.0.0 (all), :: or one address."),
            value=repr(text),
        ) from None


def validate_file(text: str) -> str:
    path = Path(text.strip()).expanduser().absolute()
    if not path.is_file():
        raise ValidationError.of(
            N_("{path} is not a readable file; give the path of a PEM file."), path=str(path)
        )
    return str(path)


_YES_NO = ("yes", "no")
CONSOLE_LANGUAGES = ("en", "zh-cn")


# --- the registry -------------------------------------------------------------------------


@dataclass(frozen=True)
class SettingKey:
    name: str
    help: str
    #: Turns what a person typed into the stored value, or raises ValidationError.
    parse: Callable[[str], str]
    default: SettingValue = ""
    #: Kept encrypted in the secrets table; write-only; shown as "(set)" / "(not set)".
    secret: bool = False
    #: Stored as a list of strings (typed as a comma-separated list on the command line).
    is_list: bool = False
    choices: tuple[str, ...] = ()


_SERVER_HELP = "host[:port], port 587 if omitted"

KEYS: dict[str, SettingKey] = {
    k.name: k
    for k in [
        SettingKey(
            "provider",
            f"Service provider preset: {', '.join(PRESETS)}.",
            _choice(tuple(PRESETS)),
            "none",
            choices=tuple(PRESETS),
        ),
        SettingKey(
            "oauth.server",
            f"SMTP server used with an OAuth provider ({_SERVER_HELP}).",
            normalize_server,
        ),
        SettingKey(
            "oauth.host",
            "Sign-in host of the identity platform, host[:port] (the manual's 'Host name').",
            normalize_login_host,
        ),
        SettingKey(
            "oauth.client_id",
            "Application (client) ID of your Entra ID app registration (a GUID).",
            validate_client_id,
        ),
        SettingKey(
            "oauth.tenant",
            "Tenant: common, organizations, consumers, a tenant ID or a domain.",
            validate_tenant,
        ),
        SettingKey(
            "oauth.scope",
            "Scopes to request; must contain <resource>/SMTP.Send of the provider's cloud.",
            _any_text,
        ),  # checked against the provider by validate_setting
        SettingKey(
            "smtp.server",
            f"SMTP server for provider none ({_SERVER_HELP}); setting it selects provider none.",
            normalize_server,
        ),
        SettingKey(
            "smtp.security",
            "Connection security for provider none: none, starttls or tls (implicit TLS).",
            _choice(tuple(Security)),
            Security.STARTTLS.value,
            choices=tuple(Security),
        ),
        SettingKey(
            "smtp.username",
            "AUTH PLAIN/LOGIN user for provider none (empty: no AUTH).",
            validate_username,
        ),
        SettingKey(
            "smtp.password",
            "AUTH PLAIN/LOGIN password for provider none (secret, write-only).",
            _any_text,
            secret=True,
        ),
        SettingKey(
            "sender.address",
            "Sender address for relayed mail (empty: the signed-in account's primary address).",
            validate_optional_email,
        ),
        SettingKey(
            "sender.policy",
            "Sender policy for relayed mail: rewrite, allow-list or pass-through.",
            _choice(SENDER_POLICIES),
            "rewrite",
            choices=SENDER_POLICIES,
        ),
        SettingKey(
            "sender.allowed",
            "Addresses that pass unchanged under allow-list (aliases, send-as), comma-separated.",
            validate_email,
            [],
            is_list=True,
        ),
        SettingKey(
            "listener.bind",
            "Address the SMTP listener binds (0.0.0.0: all IPv4).",
            validate_bind,
            "0.0.0.0",  # noqa: S104 - office devices must reach the listener
        ),
        SettingKey(
            "listener.port", "SMTP listener port (STARTTLS offered).", _int_range(1, 65535), "2525"
        ),
        SettingKey(
            "listener.tls_port",
            "Implicit TLS (SMTPS) port, e.g. 465; empty: off.",
            _int_range(1, 65535),
        ),
        SettingKey(
            "listener.networks",
            "Client networks allowed to send (CIDR, comma-separated); others get 554 5.7.1.",
            validate_network,
            list(DEFAULT_ALLOWED_NETWORKS),
            is_list=True,
        ),
        SettingKey(
            "listener.tls_cert",
            "Certificate (PEM) for the listener's TLS; empty: a generated self-signed one.",
            validate_file,
        ),
        SettingKey("listener.tls_key", "Private key (PEM) of listener.tls_cert.", validate_file),
        SettingKey(
            "listener.auth_required",
            "Devices must authenticate with a device account (mailgate device add): yes or no.",
            _choice(_YES_NO),
            "no",
            choices=_YES_NO,
        ),
        SettingKey(
            "listener.auth_plaintext",
            "Offer AUTH without TLS, for old printers: yes or no.",
            _choice(_YES_NO),
            "no",
            choices=_YES_NO,
        ),
        SettingKey(
            "listener.max_message_size",
            "Largest message accepted (advertised with SIZE), e.g. 35M.",
            validate_size,
            str(DEFAULT_MAX_MESSAGE_SIZE),
        ),
        SettingKey(
            "listener.max_recipients",
            "Recipients accepted per message.",
            _int_range(1, 100_000),
            "1000",
        ),
        SettingKey(
            "listener.max_connections",
            "Simultaneous device connections.",
            _int_range(1, 10_000),
            "1000",
        ),
        SettingKey(
            "delivery.connections",
            "Upstream connections at once (Exchange allows 3 per mailbox).",
            _int_range(1, 20),
            "3",
        ),
        SettingKey(
            "delivery.messages_per_minute",
            "Messages per minute upstream (Exchange: 30 per mailbox).",
            _int_range(1, 10_000),
            "30",
        ),
        SettingKey(
            "delivery.recipients_per_day",
            "Recipients per rolling 24 hours (Exchange: 10,000 per mailbox).",
            _int_range(1, 10_000_000),
            "10000",
        ),
        SettingKey(
            "delivery.max_queue_lifetime",
            "How long to keep retrying before a bounce, e.g. 5d.",
            validate_duration,
            str(5 * 86400),
        ),
        SettingKey(
            "console.bind",
            "Address the admin console binds; 127.0.0.1 until an admin password exists "
            "(set 0.0.0.0 to reach it from the LAN).",
            validate_bind,
            "127.0.0.1",
        ),
        SettingKey(
            "console.port", "Admin console port (HTTP/HTTPS).", _int_range(1, 65535), "8025"
        ),
        SettingKey(
            "console.tls",
            "Serve the console over HTTPS: no, or yes (with console.tls_cert/tls_key, else a "
            "generated self-signed certificate).",
            _choice(_YES_NO),
            "no",
            choices=_YES_NO,
        ),
        SettingKey(
            "console.tls_cert",
            "Certificate (PEM) for the console's HTTPS (setting it turns HTTPS on).",
            validate_file,
        ),
        SettingKey("console.tls_key", "Private key (PEM) of console.tls_cert.", validate_file),
        SettingKey(
            "console.metrics_token",
            "Bearer token that lets a Prometheus scraper read /metrics without a console "
            "session (secret, write-only); empty: /metrics needs the admin session.",
            _any_text,
            secret=True,
        ),
        SettingKey(
            "console.language",
            "Default language of the admin console: en or zh-CN.",
            _choice(CONSOLE_LANGUAGES),
            "en",
            choices=CONSOLE_LANGUAGES,
        ),
        SettingKey(
            "network.https_proxy",
            "HTTPS proxy for the identity platform, e.g. http://proxy:3128.",
            validate_proxy_url,
        ),
        SettingKey(
            "network.ca_bundle",
            "Extra CA certificates (PEM file) trusted for HTTPS and SMTP.",
            validate_ca_bundle,
        ),
    ]
}


def get_key(name: str) -> SettingKey:
    try:
        return KEYS[name]
    except KeyError:
        raise ValidationError(f"Unknown setting {name!r}. Valid keys: {', '.join(KEYS)}.") from None


def validate_setting(name: str, value: object, provider: str) -> SettingValue:
    """Validate and normalise one value for `name`; `provider` is the one it will apply under.

    The scope is checked against the chosen provider's cloud (its SMTP.Send resource) even
    when oauth.server / oauth.host point elsewhere, such as at the simulator.
    """
    key = get_key(name)
    if key.is_list:
        items = value.replace(",", " ").split() if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ValidationError(f"{name} expects a list of text values.")
        return [_prefixed(name, key.parse, item) for item in items]
    if not isinstance(value, str):
        raise ValidationError(f"{name} expects a text value, not {type(value).__name__}.")
    if name == "oauth.scope" and value.strip():
        preset = PRESETS.get(provider)
        if preset is not None and preset.uses_oauth:
            return _prefixed(name, lambda text: validate_scope(text, preset), value)
    if not value.strip() and not key.choices:
        return ""  # an empty value clears the setting
    return _prefixed(name, key.parse, value)


def _prefixed(name: str, parse: Callable[[str], str], text: str) -> str:
    try:
        return parse(text)
    except ValidationError as error:
        raise error.in_field(name) from None


def defaults() -> dict[str, SettingValue]:
    """Every non-secret key with its default value."""
    return {
        k.name: (list(k.default) if isinstance(k.default, list) else k.default)
        for k in KEYS.values()
        if not k.secret
    }


def markdown_table() -> str:
    """The settings reference of docs/SETTINGS.md (a test keeps the two equal)."""
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    for key in KEYS.values():
        default = ", ".join(key.default) if isinstance(key.default, list) else key.default
        shown = "(secret, write-only)" if key.secret else (f"`{default}`" if default else "")
        lines.append(f"| `{key.name}` | {shown} | {key.help.replace('|', '/')} |")
    return "\n".join(lines) + "\n"
