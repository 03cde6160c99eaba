"""The clouds the simulator can play, and the names each one uses.

A profile fixes what differs between Microsoft's clouds: the resource of the SMTP.Send
scope, the verification URI of the device code flow (``https://microsoft.com/devicelogin``
worldwide, ``.../deviceloginchina`` for 21Vianet, ``.../deviceloginus`` for GCC High,
``https://www.microsoft.com/link`` for personal accounts), the real host names shown in
banners and texts, and the mail domains of the default directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Profile:
    name: str
    #: Tenant segment a device uses by default (`common`, or `consumers` for Outlook.com).
    default_tenant: str
    #: Resource whose `/SMTP.Send` scope Exchange accepts in this cloud.
    smtp_resource: str
    #: Real sign-in host of this cloud (shown in texts; the simulator listens on 127.0.0.1).
    login_host: str
    #: Real SMTP submission host of this cloud.
    smtp_host: str
    #: Host name Exchange puts in its 220 banner and in `[Hostname=...]` texts.
    banner_host: str
    #: Primary mail domain of the default directory.
    mail_domain: str
    #: The tenant's initial domain, used for UPNs that differ from the primary address.
    initial_domain: str
    #: Tenant display name and id of the default directory.
    tenant_name: str
    tenant_id: str
    #: Microsoft's verification_uri for this cloud (RFC 8628 section 3.2).
    verification_uri: str = "https://microsoft.com/devicelogin"
    #: Other names of the same Exchange resource that the cloud also accepts in a scope
    #: (worldwide: https://outlook.office365.com, as Microsoft's SMTP OAuth page shows).
    other_smtp_resources: tuple[str, ...] = ()

    @property
    def smtp_scope(self) -> str:
        return f"{self.smtp_resource}/SMTP.Send"

    @property
    def devicelogin_path(self) -> str:
        """Where the simulator serves the page of :attr:`verification_uri` on its own address."""
        return urlsplit(self.verification_uri).path

    @property
    def smtp_resources(self) -> tuple[str, ...]:
        return (self.smtp_resource, *self.other_smtp_resources)

    def smtp_scope_in(self, scopes: list[str]) -> bool:
        """Does a token with *scopes* carry this cloud's SMTP.Send (under any resource name)?"""
        wanted = {f"{r}/SMTP.Send".lower() for r in self.smtp_resources}
        return any(scope.lower() in wanted for scope in scopes)


PROFILES: dict[str, Profile] = {
    "global": Profile(
        name="global",
        default_tenant="common",
        smtp_resource="https://outlook.office.com",
        login_host="login.microsoftonline.com",
        smtp_host="smtp.office365.com",
        banner_host="BY1PR10CA0041.outlook.office365.com",
        mail_domain="contoso.com",
        initial_domain="contoso.onmicrosoft.com",
        tenant_name="Contoso",
        tenant_id="72f988bf-86f1-41af-91ab-2d7cd011db47",
        other_smtp_resources=("https://outlook.office365.com",),
    ),
    "21vianet": Profile(
        name="21vianet",
        default_tenant="common",
        smtp_resource="https://partner.outlook.cn",
        login_host="login.partner.microsoftonline.cn",
        smtp_host="smtp.partner.outlook.cn",
        banner_host="SH0PR01CA0041.CHNPR01.prod.partner.outlook.cn",
        mail_domain="contoso.cn",
        initial_domain="contoso.partner.onmschina.cn",
        tenant_name="Contoso China",
        tenant_id="3d1c5b2a-7e4f-4a1b-9c8d-0f6e5d4c3b2a",
        verification_uri="https://microsoft.com/deviceloginchina",
    ),
    "gcc-high": Profile(
        name="gcc-high",
        default_tenant="common",
        smtp_resource="https://outlook.office365.us",
        login_host="login.microsoftonline.us",
        smtp_host="smtp.office365.us",
        banner_host="BN1PR09CA0041.namprd09.prod.outlook.us",
        mail_domain="contoso.us",
        initial_domain="contoso.onmicrosoft.us",
        tenant_name="Contoso Federal",
        tenant_id="9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
        verification_uri="https://microsoft.com/deviceloginus",
    ),
    "consumers": Profile(
        name="consumers",
        default_tenant="consumers",
        smtp_resource="https://outlook.office.com",
        login_host="login.microsoftonline.com",
        smtp_host="smtp-mail.outlook.com",
        banner_host="BL1PR13CA0041.outlook.office365.com",
        mail_domain="outlook.com",
        initial_domain="outlook.com",
        # The fixed tenant id Microsoft uses for personal accounts.
        tenant_name="Microsoft Services",
        tenant_id="9188040d-6c67-4c5b-b112-36a304b66dad",
        verification_uri="https://www.microsoft.com/link",
    ),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(PROFILES)
        raise ValueError(f"unknown simulator profile {name!r}; choose one of: {known}") from None
