"""Everything the simulated cloud remembers, shared by its identity platform and its SMTP server.

The identity platform issues access tokens into :class:`SimState`; the SMTP server looks
them up there, so a token is only good at SMTP if the simulated sign-in issued it, for the
right scope, and it has not expired. Scenario switches (:class:`Scenario`) change what
either side does; tests flip them through the Python API or the control API.

All times come from ``state.clock()`` so tests can move time forward without sleeping.
"""

from __future__ import annotations

import secrets
import string
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mailgate.sim.directory import Directory, default_directory
from mailgate.sim.profiles import Profile


@dataclass
class Scenario:
    """Switches for the behaviours a test or a demo wants to see.

    Every field has the value that makes the simulator behave like a healthy tenant.
    """

    #: "none": consent given; "user": AADSTS65001 until consent; "admin": AADSTS90094
    #: (the tenant requires admin consent) until the admin-consent page is approved.
    consent_required: str = "none"
    #: Conditional Access blocks device code flow (AADSTS53003 after the person approves).
    conditional_access_block: bool = False
    #: Tenant security policy / security defaults block (AADSTS530032 / 530035).
    security_policy_block: bool = False
    security_defaults_block: bool = False
    #: The client ID is not registered in the directory (AADSTS700016 at /devicecode).
    app_not_found: bool = False
    #: "Allow public client flows" is off for the app (AADSTS7000218 when polling /token).
    public_client_disabled: bool = False
    #: The app is single-tenant and used with /common (AADSTS50194).
    single_tenant_app: bool = False
    #: Approvals on the /devicelogin page are declined automatically (authorization_declined).
    user_declines: bool = False
    #: Lifetime of device codes in seconds (Microsoft: 900). Short values test expiry.
    device_code_lifetime: int = 900
    #: Polling interval the /devicecode response asks for (Microsoft: 5).
    poll_interval: int = 5
    #: Lifetime of access tokens in seconds (Microsoft: 3600-5399, randomised).
    access_token_lifetime: int | None = None
    #: Answer `expires_in` as a string, as 21Vianet has been seen to do.
    expires_in_as_string: bool = False
    #: Every refresh token issued so far is revoked (AADSTS50173 on refresh).
    refresh_revoked: bool = False
    #: Every refresh token issued so far has expired from inactivity (AADSTS700082 on refresh).
    refresh_expired: bool = False
    #: Token endpoint: "ok", "503" (Service Unavailable), "slow" (delayed by token_delay) or
    #: "timeout" (no answer until the client gives up: held for an hour, or until stopped).
    token_endpoint: str = "ok"
    token_delay: float = 0.0
    #: Retry-After (seconds) on the token endpoint's 503; None: no header.
    token_retry_after: int | None = None
    #: SMTP AUTH disabled for the whole tenant (535 5.7.139 ... for the Tenant).
    smtp_auth_disabled_tenant: bool = False
    #: The SMTP server does not listen (connections refused) while True.
    smtp_down: bool = False
    #: Fault injection for the SMTP server (reliability tests). A reply sent instead of the
    #: banner, after which the server hangs up (e.g. "421 4.3.2 Service not available").
    smtp_connect_reply: str | None = None
    #: Seconds the server waits before every reply it writes (a slow or overloaded server).
    smtp_reply_delay: float = 0.0
    #: Reset the connection (TCP RST) once part of the DATA text has arrived.
    smtp_reset_in_data: bool = False
    #: Answer STARTTLS with 220, then send bytes that are no TLS handshake and hang up.
    smtp_tls_failure: bool = False
    #: Per-mailbox Exchange limits (3 connections, 30/min, 10,000 rcpts/24 h, 500/message).
    limits: bool = True
    #: Refuse command lines longer than this many octets with "500 5.5.2 Line too long",
    #: as Dovecot does at 1030 (RFC 4954 section 4 lets a server be this strict). None: off.
    max_command_line: int | None = None
    #: What a password AUTH gets: "5.7.139" (today's "basic authentication is disabled") or
    #: "5.7.30" (the older "Basic authentication is not supported for Client Submission").
    basic_auth_reply: str = "5.7.139"
    #: The 432 4.3.2 text for a 4th connection: "connections" (what clients see now) or
    #: "thread" (the documented "sender thread limit exceeded").
    concurrency_reply: str = "connections"
    #: Send "334 <base64 JSON error>" before the final 535 on a bad XOAUTH2 token (RFC 7628 style).
    xoauth2_error_challenge: bool = True

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}


def _random_code(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def new_user_code() -> str:
    """Microsoft's user codes: 9 characters, upper-case letters and digits."""
    return _random_code(string.ascii_uppercase + string.digits, 9)


def new_opaque_token(prefix: str, length: int) -> str:
    """An opaque token of realistic length (real access tokens are 1.5-2.5 KB)."""
    body = secrets.token_urlsafe(length)[: length - len(prefix)]
    return prefix + body


@dataclass
class DeviceCodeRequest:
    device_code: str
    user_code: str
    client_id: str
    tenant: str
    scopes: list[str]
    issued_at: float
    expires_at: float
    interval: int
    #: "pending", "approved", "declined", "redeemed"
    status: str = "pending"
    upn: str | None = None
    last_poll: float | None = None


@dataclass
class AccessGrant:
    token: str
    upn: str
    client_id: str
    scopes: list[str]
    expires_at: float


@dataclass
class RefreshGrant:
    token: str
    upn: str
    client_id: str
    scopes: list[str]
    issued_at: float
    #: Rotated refresh tokens stay usable for a while at Microsoft; the simulator keeps
    #: them valid too, but records the rotation so tests can see it happened.
    superseded: bool = False


@dataclass
class StoredMessage:
    id: int
    queue_id: str
    upn: str
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    received_at: float
    #: True when the 30 messages/minute limit was exceeded: Exchange accepts, then delays.
    delayed: bool = False

    def summary(self) -> dict[str, Any]:
        from email.parser import BytesHeaderParser
        from email.policy import default

        headers = BytesHeaderParser(policy=default).parsebytes(self.data)
        return {
            "id": self.id,
            "queue_id": self.queue_id,
            "upn": self.upn,
            "mail_from": self.mail_from,
            "rcpt_tos": list(self.rcpt_tos),
            "from": str(headers.get("From", "")),
            "subject": str(headers.get("Subject", "")),
            "size": len(self.data),
            "received_at": self.received_at,
            "delayed": self.delayed,
        }


@dataclass
class Counters:
    """Requests seen, for tests and benchmarks (e.g. how many refreshes a client made)."""

    devicecode_requests: int = 0
    token_requests: int = 0
    refresh_grants: int = 0
    device_code_grants: int = 0
    smtp_connections: int = 0
    smtp_auth_success: int = 0
    smtp_auth_failure: int = 0
    messages_accepted: int = 0


@dataclass
class SimState:
    profile: Profile
    directory: Directory
    scenario: Scenario = field(default_factory=Scenario)
    clock: Callable[[], float] = time.time
    device_codes: dict[str, DeviceCodeRequest] = field(default_factory=dict)
    access_tokens: dict[str, AccessGrant] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshGrant] = field(default_factory=dict)
    #: client IDs an administrator consented to on the admin-consent page.
    admin_consented: set[str] = field(default_factory=set)
    messages: list[StoredMessage] = field(default_factory=list)
    counters: Counters = field(default_factory=Counters)
    #: The simulator's servers run on one event loop; the Python API of tests may be called
    #: from other threads. Anything that mutates collections takes this lock.
    lock: threading.RLock = field(default_factory=threading.RLock)

    @classmethod
    def create(cls, profile: Profile, clock: Callable[[], float] = time.time) -> SimState:
        return cls(profile=profile, directory=default_directory(profile), clock=clock)

    # -- scenario -------------------------------------------------------------------------
    def set_scenario(self, **changes: Any) -> Scenario:
        """Change switches by name; unknown names are refused (a typo must not pass silently)."""
        unknown = set(changes) - Scenario.field_names()
        if unknown:
            raise ValueError(f"unknown scenario switch(es): {', '.join(sorted(unknown))}")
        with self.lock:
            for key, value in changes.items():
                setattr(self.scenario, key, value)
            return self.scenario

    def reset_scenario(self) -> None:
        with self.lock:
            self.scenario = Scenario()

    def scenario_json(self) -> dict[str, Any]:
        return asdict(self.scenario)

    # -- device codes ---------------------------------------------------------------------
    def new_device_code(self, client_id: str, tenant: str, scopes: list[str]) -> DeviceCodeRequest:
        now = self.clock()
        with self.lock:
            user_code = new_user_code()
            while any(r.user_code == user_code for r in self.device_codes.values()):
                user_code = new_user_code()
            request = DeviceCodeRequest(
                device_code=new_opaque_token("DAQABIQEAAAD", 180),
                user_code=user_code,
                client_id=client_id,
                tenant=tenant,
                scopes=scopes,
                issued_at=now,
                expires_at=now + self.scenario.device_code_lifetime,
                interval=self.scenario.poll_interval,
            )
            self.device_codes[request.device_code] = request
            return request

    def find_user_code(self, user_code: str) -> DeviceCodeRequest | None:
        wanted = user_code.strip().upper().replace("-", "")
        with self.lock:
            for request in self.device_codes.values():
                if request.user_code == wanted:
                    return request
        return None

    # -- tokens ---------------------------------------------------------------------------
    def issue_access_token(
        self, upn: str, client_id: str, scopes: list[str], lifetime: int
    ) -> AccessGrant:
        grant = AccessGrant(
            token=new_opaque_token("EwBIBMl6BAAU", 1800),
            upn=upn,
            client_id=client_id,
            scopes=scopes,
            expires_at=self.clock() + lifetime,
        )
        with self.lock:
            self.access_tokens[grant.token] = grant
        return grant

    def issue_refresh_token(self, upn: str, client_id: str, scopes: list[str]) -> RefreshGrant:
        grant = RefreshGrant(
            token=new_opaque_token("M.C105_BAY.0.U.-", 400),
            upn=upn,
            client_id=client_id,
            scopes=scopes,
            issued_at=self.clock(),
        )
        with self.lock:
            self.refresh_tokens[grant.token] = grant
        return grant

    def lookup_access_token(self, token: str) -> AccessGrant | None:
        with self.lock:
            return self.access_tokens.get(token)

    def expire_access_tokens(self, upn: str | None = None) -> int:
        """End access tokens now, before the lifetime the client was told: as when a server
        has its own idea of expiry, or a token was revoked on the resource side. Refresh
        tokens stay good, so a client that refreshes gets through without a new sign-in."""
        now = self.clock()
        with self.lock:
            victims = [
                g
                for g in self.access_tokens.values()
                if (upn is None or g.upn.lower() == upn.lower()) and g.expires_at > now
            ]
            for grant in victims:
                grant.expires_at = now
            return len(victims)

    def revoke_all_tokens(self, upn: str | None = None) -> int:
        """Forget refresh and access tokens (of one user, or all): like revoking sessions."""
        with self.lock:
            victims = [
                t
                for t, g in self.refresh_tokens.items()
                if upn is None or g.upn.lower() == upn.lower()
            ]
            for token in victims:
                del self.refresh_tokens[token]
            access = [
                t
                for t, g in self.access_tokens.items()
                if upn is None or g.upn.lower() == upn.lower()
            ]
            for token in access:
                del self.access_tokens[token]
            return len(victims) + len(access)

    # -- messages -------------------------------------------------------------------------
    def store_message(
        self, upn: str, mail_from: str, rcpt_tos: list[str], data: bytes, delayed: bool
    ) -> StoredMessage:
        with self.lock:
            message = StoredMessage(
                id=len(self.messages) + 1,
                queue_id=uuid.uuid4().hex[:12].upper(),
                upn=upn,
                mail_from=mail_from,
                rcpt_tos=list(rcpt_tos),
                data=data,
                received_at=self.clock(),
                delayed=delayed,
            )
            self.messages.append(message)
            self.counters.messages_accepted += 1
            return message
