"""Provider presets: the vendor manual's four fields (server, sign-in host, tenant, scope)
for each Microsoft cloud, as docs/SETTINGS.md lists them.

A preset fills the four fields of the vendor manual's SMTP page (server address, sign-in
host, client ID, scope) plus the tenant. `none` is the manual's "[Not specified]": any
SMTP server, optionally with a password.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Security(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"  # implicit TLS (port 465)


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    smtp_host: str
    smtp_port: int
    security: Security
    #: Sign-in host of the cloud's identity platform; empty for `none`.
    login_host: str
    tenant: str
    scope: str
    #: The resource whose /SMTP.Send a scope must contain in this cloud.
    smtp_resource: str

    @property
    def uses_oauth(self) -> bool:
        return bool(self.login_host)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            name="exchange-online",
            title="Exchange Online (worldwide)",
            smtp_host="smtp.office365.com",
            smtp_port=587,
            security=Security.STARTTLS,
            login_host="login.microsoftonline.com",
            tenant="common",
            scope="https://outlook.office.com/SMTP.Send offline_access openid email",
            smtp_resource="https://outlook.office.com",
        ),
        Preset(
            name="exchange-online-21vianet",
            title="Exchange Online operated by 21Vianet (China)",
            smtp_host="smtp.partner.outlook.cn",
            smtp_port=587,
            security=Security.STARTTLS,
            login_host="login.partner.microsoftonline.cn",
            tenant="common",
            scope="https://partner.outlook.cn/SMTP.Send offline_access openid email",
            smtp_resource="https://partner.outlook.cn",
        ),
        Preset(
            name="exchange-online-gcc-high",
            title="Exchange Online GCC High (US Government)",
            smtp_host="smtp.office365.us",
            smtp_port=587,
            security=Security.STARTTLS,
            login_host="login.microsoftonline.us",
            tenant="common",
            scope="https://outlook.office365.us/SMTP.Send offline_access openid email",
            smtp_resource="https://outlook.office365.us",
        ),
        Preset(
            name="outlook-com",
            title="Outlook.com (personal Microsoft accounts)",
            smtp_host="smtp-mail.outlook.com",
            smtp_port=587,
            security=Security.STARTTLS,
            login_host="login.microsoftonline.com",
            tenant="consumers",
            scope="https://outlook.office.com/SMTP.Send offline_access openid email",
            smtp_resource="https://outlook.office.com",
        ),
        Preset(
            name="none",
            title="Not specified (any SMTP server)",
            smtp_host="",
            smtp_port=587,
            security=Security.STARTTLS,
            login_host="",
            tenant="",
            scope="",
            smtp_resource="",
        ),
    ]
}

#: MSAL adds these itself and refuses them when passed in (its "reserved scopes").
MSAL_RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})


def msal_scopes(scope: str) -> list[str]:
    """The configured scope string as MSAL wants it: reserved scopes stripped, `email` kept."""
    return [s for s in scope.split() if s.lower() not in MSAL_RESERVED_SCOPES]
