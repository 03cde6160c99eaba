"""The typed view of the settings that the rest of mailgate reads.

The settings store keeps dotted keys (`oauth.client_id`, `smtp.server`, ...); this module
is what identity, submission and the gateway consume, so none of them parses strings.
Secrets (SMTP password, token cache) are not here: they come from the store's encrypted
secrets, only where they are used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from urllib.parse import quote

from mailgate.config.presets import MSAL_RESERVED_SCOPES, Security


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class OAuthConfig:
    #: The manual's "Host name": sign-in host, optionally with a port (the simulator's has one).
    login_host: str
    tenant: str
    client_id: str
    #: The configured scope string, e.g.
    #: "https://outlook.office.com/SMTP.Send offline_access openid email".
    scope: str

    @property
    def authority(self) -> str:
        return f"https://{self.login_host}/{self.tenant}"

    @property
    def msal_scopes(self) -> list[str]:
        """MSAL adds openid/profile/offline_access itself and refuses them if passed."""
        return [s for s in self.scope.split() if s.lower() not in MSAL_RESERVED_SCOPES]

    @property
    def admin_consent_url(self) -> str:
        # Consent is granted per tenant; `consumers` has no admin, so fall back to `common`.
        tenant = "common" if self.tenant in {"consumers", ""} else self.tenant
        return f"https://{self.login_host}/{tenant}/adminconsent?client_id={quote(self.client_id)}"


@dataclass(frozen=True)
class TrustConfig:
    #: Extra CA certificates (PEM) trusted besides the system store, for HTTPS and SMTP
    #: (TLS-inspecting proxies, the simulator's CA).
    ca_bundle: Path | None = None
    #: HTTPS proxy for the identity platform, e.g. "http://proxy.example:3128".
    https_proxy: str | None = None


@dataclass(frozen=True)
class OutboundConfig:
    provider: str
    server: Endpoint
    security: Security
    #: None for provider `none`.
    oauth: OAuthConfig | None
    #: AUTH PLAIN/LOGIN user for provider `none`; the password is a secret in the store.
    username: str | None = None


class SenderPolicy(StrEnum):
    """What happens to the sender of relayed mail (Exchange refuses a sender the mailbox
    may not send as: 554 5.2.252 SendAsDenied)."""

    #: Envelope and From become the sender address; the device's From goes to Reply-To.
    REWRITE = "rewrite"
    #: Listed aliases / send-as addresses pass; others are rewritten.
    ALLOW_LIST = "allow-list"
    PASS_THROUGH = "pass-through"  # noqa: S105 - not a password


#: Loopback, RFC 1918 private ranges, link-local, and IPv6 unique-local/link-local: where
#: office devices live. Anything else must be allowed explicitly (no open relay).
DEFAULT_ALLOWED_NETWORKS: tuple[str, ...] = (
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
)
#: Exchange Online's default MaxSendSize.
DEFAULT_MAX_MESSAGE_SIZE = 35 * 1024 * 1024


@dataclass(frozen=True)
class ListenerConfig:
    """The SMTP listener devices send to (`listener.*` settings)."""

    bind: str = "0.0.0.0"  # noqa: S104 - devices on the office network must reach it
    port: int = 2525
    #: Implicit TLS (SMTPS) port; None: off.
    tls_port: int | None = None
    networks: tuple[str, ...] = DEFAULT_ALLOWED_NETWORKS
    #: Certificate and key for STARTTLS / implicit TLS; None: a generated self-signed pair.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    auth_required: bool = False
    #: Offer AUTH before STARTTLS (old printers cannot do TLS).
    auth_plaintext: bool = False
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    max_recipients: int = 1000
    max_connections: int = 1000


@dataclass(frozen=True)
class DeliveryConfig:
    """Pacing and retries toward the provider (`delivery.*`); defaults are Exchange's limits."""

    connections: int = 3
    messages_per_minute: int = 30
    recipients_per_day: int = 10_000
    max_queue_lifetime: float = 5 * 86_400.0


@dataclass(frozen=True)
class ConsoleConfig:
    """The admin console (`console.*`). Loopback by default: the admin UI must not be on
    the LAN before an admin password exists; the admin opens it up deliberately."""

    bind: str = "127.0.0.1"
    port: int = 8025
    #: HTTPS when `tls` is on or both files are set (the session cookie is then Secure);
    #: `tls` without files: a generated self-signed certificate.
    tls: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: "en" or "zh-cn": the language shown until the admin picks one.
    language: str = "en"


@dataclass(frozen=True)
class Settings:
    outbound: OutboundConfig
    trust: TrustConfig
    #: Sender address override (the console's "Device details");
    #: None: the account's primary address.
    sender_address: str | None = None
    #: How relayed mail's sender is treated (see SenderPolicy).
    sender_policy: SenderPolicy = SenderPolicy.REWRITE
    #: Addresses that pass unchanged under `allow-list` (aliases, send-as addresses).
    sender_allowed: tuple[str, ...] = ()
    listener: ListenerConfig = field(default_factory=ListenerConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    #: False when the outbound side is not set up yet (no provider, server or client ID):
    #: `outbound` is then a placeholder and nothing may be sent. Only
    #: `Store.settings(allow_incomplete=True)` returns such settings (for `serve`, whose
    #: console is where the administrator completes them).
    configured: bool = True
    #: Why the outbound side is incomplete, with what to do (when not configured).
    missing: str = ""


#: The outbound placeholder of settings that are not configured yet.
UNCONFIGURED_OUTBOUND = OutboundConfig("none", Endpoint("", 0), Security.STARTTLS, None)


@dataclass(frozen=True)
class AccountState:
    """Who is signed in and how the tokens stand; kept by the store, shown by `status`."""

    upn: str
    primary_address: str
    signed_in_at: float
    #: Last time a refresh token was redeemed (or the sign-in); re-sign-in is needed
    #: 90 days after this if nothing refreshes (AADSTS700082).
    last_refresh_at: float
    access_token_expires_at: float | None = None
    #: Last sign-in/refresh error code (e.g. "AADSTS50173"), None when healthy.
    last_error: str | None = None
    last_error_at: float | None = None
