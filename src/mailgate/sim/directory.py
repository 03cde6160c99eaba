"""The simulated tenant directory: mailboxes a person can sign in as and send from.

Real tenants have mailboxes whose UPN differs from the primary SMTP address (renamed users,
UPNs on the initial `onmicrosoft` domain), aliases, and send-as grants on other addresses;
the default directory has each of these so clients are tested against them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from mailgate.sim.profiles import Profile


@dataclass
class Mailbox:
    upn: str
    primary_address: str
    display_name: str
    aliases: list[str] = field(default_factory=list)
    #: Addresses this mailbox has Send As permission on (Exchange admin center grants).
    send_as: list[str] = field(default_factory=list)
    #: `Set-CASMailbox -SmtpClientAuthenticationDisabled` inverted.
    smtp_auth_enabled: bool = True
    account_enabled: bool = True
    locked: bool = False
    #: Sign-in asks for a second factor the device code flow cannot satisfy here (AADSTS50076).
    mfa_required: bool = False
    object_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def may_send_as(self, address: str) -> bool:
        """Exchange accepts the primary address, any alias and any send-as grant."""
        wanted = address.lower()
        allowed = {self.primary_address.lower(), *(a.lower() for a in self.aliases)}
        allowed |= {a.lower() for a in self.send_as}
        return wanted in allowed

    @property
    def addresses(self) -> set[str]:
        """Every name Exchange resolves to this mailbox, lower-cased: UPN, primary, aliases."""
        return {self.upn.lower(), self.primary_address.lower(), *(a.lower() for a in self.aliases)}

    def to_json(self) -> dict[str, object]:
        return {
            "upn": self.upn,
            "primary_address": self.primary_address,
            "display_name": self.display_name,
            "aliases": list(self.aliases),
            "send_as": list(self.send_as),
            "smtp_auth_enabled": self.smtp_auth_enabled,
            "account_enabled": self.account_enabled,
            "locked": self.locked,
            "mfa_required": self.mfa_required,
        }


class Directory:
    """Mailboxes by UPN (case-insensitive, as Entra ID compares them)."""

    def __init__(self, mailboxes: list[Mailbox] | None = None) -> None:
        self._by_upn: dict[str, Mailbox] = {}
        for mailbox in mailboxes or []:
            self.add(mailbox)

    def add(self, mailbox: Mailbox) -> None:
        self._by_upn[mailbox.upn.lower()] = mailbox

    def remove(self, upn: str) -> None:
        self._by_upn.pop(upn.lower(), None)

    def get(self, upn: str) -> Mailbox | None:
        return self._by_upn.get(upn.lower())

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self._by_upn.values()))

    def __len__(self) -> int:
        return len(self._by_upn)


def default_directory(profile: Profile) -> Directory:
    """The directory every simulator starts with.

    - `scanner@<domain>`: UPN equals the primary address; one alias; send-as on `reception@`.
    - `jsmith@<initial domain>`: UPN differs from the primary address `john.smith@<domain>`.
    - `reception@<domain>`: a shared-style mailbox others may send as.
    - `legacy@<domain>`: SMTP AUTH disabled for the mailbox (5.7.139 ... for the Mailbox).
    """
    d = profile.mail_domain
    if profile.name == "consumers":
        # Outlook.com: the UPN is the address; no aliases on other domains, no send-as.
        return Directory(
            [
                Mailbox(upn=f"scanner@{d}", primary_address=f"scanner@{d}", display_name="Scanner"),
                Mailbox(
                    upn=f"john.smith@{d}",
                    primary_address=f"john.smith@{d}",
                    display_name="John Smith",
                    aliases=[f"jsmith@{d}"],
                ),
            ]
        )
    return Directory(
        [
            Mailbox(
                upn=f"scanner@{d}",
                primary_address=f"scanner@{d}",
                display_name="Office Scanner",
                aliases=[f"scan@{d}"],
                send_as=[f"reception@{d}"],
            ),
            Mailbox(
                upn=f"jsmith@{profile.initial_domain}",
                primary_address=f"john.smith@{d}",
                display_name="John Smith",
                aliases=[f"jsmith@{d}"],
            ),
            Mailbox(
                upn=f"reception@{d}", primary_address=f"reception@{d}", display_name="Reception"
            ),
            Mailbox(
                upn=f"legacy@{d}",
                primary_address=f"legacy@{d}",
                display_name="Legacy Device",
                smtp_auth_enabled=False,
            ),
        ]
    )
