"""The simulated Microsoft identity platform: Entra ID's v2.0 endpoints for the device code flow.

Theory of operation
-------------------
A device asks ``POST /{tenant}/oauth2/v2.0/devicecode`` for a device code and a user code,
shows the user code, and polls ``POST /{tenant}/oauth2/v2.0/token`` with the device code.
A person opens ``/devicelogin`` (``/deviceloginchina`` in the 21Vianet cloud), types the
user code, picks an account and approves or declines; :func:`sign_in` is what that page
does, and tests and the control API call it directly. The next poll then gets tokens, or
the error Microsoft would send: policies, consent and the account's state are checked when
tokens are issued, as Entra ID evaluates Conditional Access at token issuance. Later the
device trades its refresh token for new tokens (``grant_type=refresh_token``), which
rotates the refresh token.

The decisions (``start_device_flow``, ``redeem_device_code``, ``redeem_refresh_token``) are
plain functions of :class:`SimState` and the form, returning a reply body or an
:class:`AadstsFailure`; the Starlette layer at the bottom only parses forms and renders.
Access tokens go into ``state.access_tokens`` through ``state.issue_access_token``, where
the simulated Exchange looks them up. ID tokens are RS256 JWTs signed with a key published
at the JWKS endpoint; MSAL only decodes them, but a client that verifies them can.

MSAL finds these endpoints through instance discovery: a client passes
``instance_discovery="<base>/common/discovery/instance"`` and ``authority="<base>/common"``.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from mailgate.sim.aadsts import (
    AadstsFailure,
    declined,
    grant_timestamp,
    is_guid,
    public_client_refused,
)
from mailgate.sim.directory import Mailbox
from mailgate.sim.introspection import introspection_route
from mailgate.sim.state import DeviceCodeRequest, SimState

#: Tenant segments that name no single directory.
META_TENANTS = frozenset({"common", "organizations", "consumers"})
#: The tenant of personal Microsoft accounts; /consumers documents use it as issuer.
MSA_TENANT_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"
#: Scopes of OpenID Connect rather than of a resource; MSAL adds the first three itself.
OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: Office 365 Exchange Online's application ID: the resource MFA texts name.
EXCHANGE_ONLINE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"
#: Display name of the administrator's app registration, as the sign-in pages show it.
APP_NAME = "mailgate"
#: How long token_endpoint="timeout" holds a request: longer than any client waits.
TIMEOUT_HOLD = 3600.0
#: Refresh tokens expire after 90 days unused (AADSTS700082).
REFRESH_INACTIVITY_LIMIT = 90 * 24 * 3600

Reply = dict[str, object] | AadstsFailure


@dataclass(frozen=True)
class SignInOutcome:
    """What the /devicelogin page tells the person after they approve or decline."""

    ok: bool
    message: str


# -- tenants, clients and scopes -------------------------------------------------------------


def tenant_id_of(state: SimState, tenant: str) -> str | None:
    """The meta tenant or the GUID a tenant segment names; None for an unknown tenant."""
    wanted = tenant.lower()
    if wanted in META_TENANTS:
        return wanted
    profile = state.profile
    if wanted in {profile.tenant_id, profile.mail_domain.lower(), profile.initial_domain.lower()}:
        return profile.tenant_id
    return None


def _check_tenant(state: SimState, tenant: str) -> AadstsFailure | None:
    if tenant_id_of(state, tenant) is None:
        return AadstsFailure(90002, {"tenant": tenant})
    return None


def _check_client(state: SimState, tenant: str, client_id: str) -> AadstsFailure | None:
    if not client_id:
        return AadstsFailure(900144, {"parameter": "client_id"})
    # Any well-formed GUID is "registered" unless the scenario says the app is missing.
    if not is_guid(client_id) or state.scenario.app_not_found:
        return AadstsFailure(
            700016, {"client_id": client_id, "directory": state.profile.tenant_name}
        )
    if state.scenario.single_tenant_app and tenant.lower() in {"common", "organizations"}:
        return AadstsFailure(50194, {"client_id": client_id, "app_name": APP_NAME})
    return None


def _parse_scopes(state: SimState, raw: str) -> list[str] | AadstsFailure:
    """Scopes of this cloud's Exchange resource (SMTP.Send or .default) plus OIDC scopes."""
    scopes = raw.split()
    if not scopes:
        return AadstsFailure(900144, {"parameter": "scope"})
    allowed = set(OIDC_SCOPES)
    for resource in state.profile.smtp_resources:
        allowed |= {f"{resource.lower()}/smtp.send", f"{resource.lower()}/.default"}
    for scope in scopes:
        if scope.lower() not in allowed:
            return AadstsFailure(70011, {"scope": scope})
    return scopes


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


# -- signing ---------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_json(value: dict[str, Any]) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode())


@functools.cache
def _signing_key() -> rsa.RSAPrivateKey:
    # One key per process: generating RSA keys is slow, and every simulator in a test run
    # publishes its own JWKS with this key.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key_id() -> str:
    der = (
        _signing_key()
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return _b64url(hashlib.sha256(der).digest()[:20])


def jwks() -> dict[str, object]:
    numbers = _signing_key().public_key().public_numbers()
    n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
    e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
    return {
        "keys": [{"kty": "RSA", "use": "sig", "kid": _key_id(), "n": _b64url(n), "e": _b64url(e)}]
    }


def _sign_jwt(claims: dict[str, Any]) -> str:
    signing_input = (
        f"{_b64url_json({'typ': 'JWT', 'alg': 'RS256', 'kid': _key_id()})}.{_b64url_json(claims)}"
    )
    signature = _signing_key().sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


# -- tokens ----------------------------------------------------------------------------------


def _id_token(
    state: SimState, issuer_base: str, mailbox: Mailbox, client_id: str, *, email: bool
) -> str:
    now = int(state.clock())
    tenant_id = state.profile.tenant_id
    claims: dict[str, Any] = {
        "aud": client_id,
        "iss": f"{issuer_base}/{tenant_id}/v2.0",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "name": mailbox.display_name,
        "oid": mailbox.object_id,
        "preferred_username": mailbox.upn,
        # Entra ID's `sub` is pairwise: the same user has a different one in each app.
        "sub": _b64url(hashlib.sha256(f"{client_id}:{mailbox.object_id}".encode()).digest()),
        "tid": tenant_id,
        "ver": "2.0",
    }
    if email:
        # The `email` claim is the primary SMTP address, present only with the email scope.
        claims["email"] = mailbox.primary_address
    return _sign_jwt(claims)


def _issue_tokens(
    state: SimState,
    issuer_base: str,
    mailbox: Mailbox,
    client_id: str,
    scopes: list[str],
    *,
    client_info: bool,
    refresh: bool,
) -> dict[str, object]:
    scenario = state.scenario
    lifetime = scenario.access_token_lifetime or random.randint(3600, 5399)
    lowered = {scope.lower() for scope in scopes}
    # Like Microsoft for a non-Graph resource, `scope` lists the resource's permission only.
    if lowered - OIDC_SCOPES:
        granted = [state.profile.smtp_scope]
    else:
        granted = sorted(lowered & {"openid", "profile", "email"})
    access = state.issue_access_token(mailbox.upn, client_id, granted, lifetime)
    expires: int | str = str(lifetime) if scenario.expires_in_as_string else lifetime
    body: dict[str, object] = {
        "token_type": "Bearer",
        "scope": " ".join(granted),
        "expires_in": expires,
        "ext_expires_in": expires,
        "access_token": access.token,
    }
    if refresh:
        body["refresh_token"] = state.issue_refresh_token(mailbox.upn, client_id, scopes).token
    if "openid" in lowered:
        body["id_token"] = _id_token(
            state, issuer_base, mailbox, client_id, email="email" in lowered
        )
    if client_info:
        # MSAL sends client_info=1 and builds its account (home_account_id) from this.
        body["client_info"] = _b64url_json(
            {"uid": mailbox.object_id, "utid": state.profile.tenant_id}
        )
    return body


def _blocker(
    state: SimState, client_id: str, mailbox: Mailbox, *, interactive: bool
) -> AadstsFailure | None:
    """Why Entra ID would refuse this user tokens for this app now, if it would.

    ``interactive`` is False for refreshes: the MFA claim of the sign-in carries over.
    """
    scenario = state.scenario
    if not mailbox.account_enabled:
        return AadstsFailure(50057)
    if mailbox.locked:
        return AadstsFailure(50053)
    with state.lock:
        consented = client_id.lower() in state.admin_consented
    if scenario.consent_required == "user" and not consented:
        return AadstsFailure(65001, {"client_id": client_id, "app_name": APP_NAME})
    if scenario.consent_required == "admin" and not consented:
        return AadstsFailure(90094)
    if scenario.security_defaults_block:
        return AadstsFailure(530035)
    if scenario.security_policy_block:
        return AadstsFailure(530032)
    if scenario.conditional_access_block:
        return AadstsFailure(53003)
    if interactive and mailbox.mfa_required:
        return AadstsFailure(50076, {"resource_id": EXCHANGE_ONLINE_APP_ID})
    return None


# -- the protocol ----------------------------------------------------------------------------


def start_device_flow(state: SimState, tenant: str, form: FormData) -> Reply:
    """``POST /devicecode`` (RFC 8628 section 3.2, with Microsoft's field values)."""
    client_id = _text(form, "client_id")
    failure = _check_tenant(state, tenant) or _check_client(state, tenant, client_id)
    if failure:
        return failure
    scopes = _parse_scopes(state, _text(form, "scope"))
    if isinstance(scopes, AadstsFailure):
        return scopes
    request = state.new_device_code(client_id, tenant, scopes)
    # Microsoft's own address, as a device shows it; the simulator serves the same page at
    # the same path on its address (Simulator.devicelogin_url), which its tools print.
    verification_uri = state.profile.verification_uri
    return {
        "user_code": request.user_code,
        "device_code": request.device_code,
        "verification_uri": verification_uri,
        "expires_in": int(request.expires_at - request.issued_at),
        "interval": request.interval,
        "message": (
            f"To sign in, use a web browser to open the page {verification_uri} "
            f"and enter the code {request.user_code} to authenticate."
        ),
    }


def _claim_device_code(
    state: SimState, client_id: str, device_code: str
) -> DeviceCodeRequest | AadstsFailure:
    """The polled request once approved (then spent), or the polling error."""
    with state.lock:
        request = state.device_codes.get(device_code)
        if request is None or request.client_id != client_id or request.status == "redeemed":
            return AadstsFailure(70018)
        now = state.clock()
        request.last_poll = now
        if now >= request.expires_at:
            return AadstsFailure(70020)
        if request.status == "pending":
            return AadstsFailure(70016)
        if request.status == "declined":
            return declined()
        # Approved: tokens or an error now, and the device code is spent either way.
        request.status = "redeemed"
        return request


def redeem_device_code(state: SimState, issuer_base: str, form: FormData) -> Reply:
    """``POST /token`` with the device code grant: one poll."""
    client_id = _text(form, "client_id")
    device_code = _text(form, "device_code")
    if not device_code:
        return AadstsFailure(900144, {"parameter": "device_code"})
    request = _claim_device_code(state, client_id, device_code)
    if isinstance(request, AadstsFailure):
        return request
    # "Allow public client flows" off: Entra ID wants a client secret, after the sign-in.
    if state.scenario.public_client_disabled:
        return public_client_refused()
    mailbox = state.directory.get(request.upn or "")
    if mailbox is None:
        return AadstsFailure(
            50034, {"upn": request.upn or "", "directory": state.profile.tenant_name}
        )
    failure = _blocker(state, client_id, mailbox, interactive=True)
    if failure:
        return failure
    return _issue_tokens(
        state,
        issuer_base,
        mailbox,
        client_id,
        request.scopes,
        client_info=_text(form, "client_info") == "1",
        refresh="offline_access" in {scope.lower() for scope in request.scopes},
    )


def redeem_refresh_token(state: SimState, issuer_base: str, form: FormData) -> Reply:
    """``POST /token`` with ``grant_type=refresh_token``; the answer carries a new refresh token."""
    client_id = _text(form, "client_id")
    token = _text(form, "refresh_token")
    if not token:
        return AadstsFailure(900144, {"parameter": "refresh_token"})
    # Unlike RFC 6749 section 6, Microsoft's v2.0 endpoint requires the scope on a refresh.
    scopes = _parse_scopes(state, _text(form, "scope"))
    if isinstance(scopes, AadstsFailure):
        return scopes
    with state.lock:
        grant = state.refresh_tokens.get(token)
        if grant is None or grant.client_id.lower() != client_id.lower():
            return AadstsFailure(70000)
        now = state.clock()
        if state.scenario.refresh_revoked:
            return AadstsFailure(
                50173,
                {"issued": grant_timestamp(grant.issued_at), "valid_from": grant_timestamp(now)},
            )
        if state.scenario.refresh_expired or now - grant.issued_at > REFRESH_INACTIVITY_LIMIT:
            return AadstsFailure(700082, {"issued": grant_timestamp(grant.issued_at)})
        # Microsoft keeps a rotated refresh token usable for a while; so does the simulator.
        grant.superseded = True
    mailbox = state.directory.get(grant.upn)
    if mailbox is None:
        return AadstsFailure(70000)
    if state.scenario.public_client_disabled:  # turned off after the sign-in
        return public_client_refused()
    failure = _blocker(state, client_id, mailbox, interactive=False)
    if failure:
        return failure
    return _issue_tokens(
        state,
        issuer_base,
        mailbox,
        client_id,
        scopes,
        client_info=_text(form, "client_info") == "1",
        refresh=True,
    )


CODE_NOT_RECOGNISED = "That code didn't work. Check the code and try again."
CODE_EXPIRED = "That code has expired. Go back to your device and get a new code."


def sign_in(state: SimState, user_code: str, upn: str, approve: bool) -> SignInOutcome:
    """What the /devicelogin page does when a person submits the code, an account and a choice.

    An unknown account leaves the code pending (the person may try again). An approval the
    tenant's policies refuse is recorded as approved: the page shows the error now and the
    device receives it at its next poll, as with Conditional Access at Microsoft.
    """
    with state.lock:
        request = state.find_user_code(user_code)
        if request is None or request.status != "pending":
            return SignInOutcome(False, CODE_NOT_RECOGNISED)
        if state.clock() >= request.expires_at:
            return SignInOutcome(False, CODE_EXPIRED)
        if not approve or state.scenario.user_declines:
            request.status = "declined"
            return SignInOutcome(
                False,
                f"You have declined to sign in to the {APP_NAME} application on your device. "
                "You may now close this window.",
            )
        mailbox = state.directory.get(upn)
        if mailbox is None:
            unknown = AadstsFailure(50034, {"upn": upn, "directory": state.profile.tenant_name})
            return SignInOutcome(False, unknown.message)
        request.status = "approved"
        request.upn = mailbox.upn
        client_id = request.client_id
    failure = _blocker(state, client_id, mailbox, interactive=True)
    if failure:
        return SignInOutcome(False, failure.message)
    return SignInOutcome(
        True,
        f"You have signed in to the {APP_NAME} application on your device. "
        "You may now close this window.",
    )


def approve_admin_consent(state: SimState, client_id: str) -> None:
    """A global administrator accepts the app's permissions for the whole tenant."""
    with state.lock:
        state.admin_consented.add(client_id.lower())


# -- discovery documents ---------------------------------------------------------------------


def openid_configuration(state: SimState, base: str, tenant: str) -> dict[str, object]:
    """The OIDC discovery document of a (known) tenant, like Microsoft's v2.0 one."""
    tenant_id = tenant_id_of(state, tenant) or tenant
    if tenant_id in {"common", "organizations"}:
        segment, issuer_tenant = tenant_id, "{tenantid}"
    elif tenant_id == "consumers":
        segment, issuer_tenant = tenant_id, MSA_TENANT_ID
    else:
        segment = issuer_tenant = tenant_id
    prefix = f"{base}/{segment}"
    return {
        "token_endpoint": f"{prefix}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "jwks_uri": f"{prefix}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{base}/{issuer_tenant}/v2.0",
        "request_uri_parameter_supported": False,
        "authorization_endpoint": f"{prefix}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{prefix}/oauth2/v2.0/devicecode",
        "end_session_endpoint": f"{prefix}/oauth2/v2.0/logout",
        "tenant_region_scope": None,
        "cloud_instance_name": state.profile.login_host.removeprefix("login."),
    }


def instance_discovery(base: str, authorization_endpoint: str) -> dict[str, object]:
    """``GET /common/discovery/instance``: where MSAL finds the tenant's discovery document.

    MSAL sends ``authorization_endpoint=https://<host>/<tenant>/oauth2/v2.0/authorize`` with
    the port dropped, so the answer is built on ``base`` and only the tenant is taken.
    """
    path = urlsplit(authorization_endpoint).path.strip("/").split("/")
    tenant = path[0] if path and path[0] else "common"
    netloc = urlsplit(base).netloc
    return {
        "tenant_discovery_endpoint": f"{base}/{tenant}/v2.0/.well-known/openid-configuration",
        "api-version": "1.1",
        "metadata": [
            {
                "preferred_network": netloc,
                "preferred_cache": netloc,
                "aliases": sorted({netloc, urlsplit(base).hostname or netloc}),
            }
        ],
    }


# -- HTTP ------------------------------------------------------------------------------------

#: Microsoft's token endpoints forbid caching their answers.
_NO_STORE = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}
#: The pages have no script; forms post back to the simulator only.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "X-Frame-Options": "DENY",
}

#: What the admin-consent page lists (the permissions SPEC.md asks of the app registration).
_PERMISSIONS = (
    ("SMTP.Send", "Send emails from mailboxes using SMTP AUTH."),
    ("offline_access", "Maintain access to data you have given it access to"),
    ("openid", "Sign users in"),
    ("email", "View users' email address"),
)


class _IdentityPlatform:
    def __init__(self, state: SimState, base_url: Callable[[], str]) -> None:
        self.state = state
        self.base_url = base_url
        self.pages = jinja2.Environment(
            loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )

    def routes(self) -> list[BaseRoute]:
        device_login = ["GET", "POST"]
        return [
            Route("/common/discovery/instance", self.instance_discovery, methods=["GET"]),
            Route(
                "/{tenant}/v2.0/.well-known/openid-configuration",
                self.openid_configuration,
                methods=["GET"],
            ),
            Route("/{tenant}/discovery/v2.0/keys", self.keys, methods=["GET"]),
            Route("/{tenant}/oauth2/v2.0/devicecode", self.devicecode, methods=["POST"]),
            Route("/{tenant}/oauth2/v2.0/token", self.token, methods=["POST"]),
            # Both paths in every cloud: a page that 404s would only hide a client's mistake
            # less clearly than the verification_uri it was given.
            Route("/devicelogin", self.device_login, methods=device_login),
            Route("/deviceloginchina", self.device_login, methods=device_login),
            Route("/deviceloginus", self.device_login, methods=device_login),
            Route("/link", self.device_login, methods=device_login),
            introspection_route(self.state),
            Route("/{tenant}/adminconsent", self.admin_consent, methods=device_login),
            Route("/{tenant}/v2.0/adminconsent", self.admin_consent, methods=device_login),
        ]

    # -- JSON endpoints -----------------------------------------------------------------
    def _reply(self, request: Request, reply: Reply) -> Response:
        if isinstance(reply, AadstsFailure):
            body = reply.body(
                now=self.state.clock(),
                login_host=self.state.profile.login_host,
                correlation_id=request.headers.get("client-request-id"),
            )
            return JSONResponse(body, status_code=reply.status, headers=_NO_STORE)
        return JSONResponse(reply, headers=_NO_STORE)

    async def instance_discovery(self, request: Request) -> Response:
        endpoint = request.query_params.get("authorization_endpoint", "")
        return JSONResponse(instance_discovery(self.base_url(), endpoint))

    async def openid_configuration(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        if tenant_id_of(self.state, tenant) is None:
            return self._reply(
                request, AadstsFailure(90002, {"tenant": tenant}, error="invalid_tenant")
            )
        return JSONResponse(openid_configuration(self.state, self.base_url(), tenant))

    async def keys(self, request: Request) -> Response:
        return JSONResponse(jwks())

    async def devicecode(self, request: Request) -> Response:
        with self.state.lock:
            self.state.counters.devicecode_requests += 1
        form = await request.form()
        reply = start_device_flow(self.state, request.path_params["tenant"], form)
        return self._reply(request, reply)

    async def token(self, request: Request) -> Response:
        state = self.state
        form = await request.form()
        grant_type = _text(form, "grant_type")
        with state.lock:
            state.counters.token_requests += 1
            if grant_type == DEVICE_CODE_GRANT:
                state.counters.device_code_grants += 1
            elif grant_type == "refresh_token":
                state.counters.refresh_grants += 1
            mode, delay = state.scenario.token_endpoint, state.scenario.token_delay
            retry_after = state.scenario.token_retry_after
        if mode == "slow":
            await asyncio.sleep(delay)
        elif mode == "timeout":
            # Never answer in time; the client's read timeout ends it (uvicorn's shutdown
            # cancels the wait when the simulator stops).
            await asyncio.sleep(TIMEOUT_HOLD)
        elif mode == "503":
            response = self._reply(request, AadstsFailure(90033, status=503))
            if retry_after is not None:
                # MSAL honours it; without it MSAL answers repeats itself for 60 s.
                response.headers["Retry-After"] = str(retry_after)
            return response
        tenant = request.path_params["tenant"]
        failure = (
            _check_tenant(state, tenant)
            or (AadstsFailure(900144, {"parameter": "grant_type"}) if not grant_type else None)
            or _check_client(state, tenant, _text(form, "client_id"))
        )
        reply: Reply
        if failure:
            reply = failure
        elif grant_type == DEVICE_CODE_GRANT:
            reply = redeem_device_code(state, self.base_url(), form)
        elif grant_type == "refresh_token":
            reply = redeem_refresh_token(state, self.base_url(), form)
        else:
            reply = AadstsFailure(70003, {"grant_type": grant_type})
        return self._reply(request, reply)

    # -- pages --------------------------------------------------------------------------
    def _page(self, status_code: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("error", "")
        html = self.pages.get_template("idp.html").render(
            app_name=APP_NAME, tenant_name=self.state.profile.tenant_name, **context
        )
        return HTMLResponse(html, status_code=status_code, headers=_PAGE_HEADERS)

    async def device_login(self, request: Request) -> Response:
        """Enter code → pick an account and Continue / Cancel → result (all plain form posts)."""
        action = request.url.path
        if request.method == "GET":
            return self._page(view="code", action=action, otc=request.query_params.get("otc", ""))
        form = await request.form()
        otc = _text(form, "otc")
        choice = _text(form, "action")
        if choice:
            outcome = sign_in(self.state, otc, _text(form, "upn"), approve=choice == "approve")
            return self._page(view="result", ok=outcome.ok, message=outcome.message)
        pending = self.state.find_user_code(otc) if otc else None
        if pending is None or pending.status != "pending":
            return self._page(view="code", action=action, otc=otc, error=CODE_NOT_RECOGNISED)
        if self.state.clock() >= pending.expires_at:
            return self._page(view="code", action=action, otc=otc, error=CODE_EXPIRED)
        return self._page(
            view="account", action=action, otc=otc, mailboxes=list(self.state.directory)
        )

    async def admin_consent(self, request: Request) -> Response:
        """The tenant-wide consent a global administrator gives once (SPEC.md, manual step 1)."""
        tenant = request.path_params["tenant"]
        form = await request.form() if request.method == "POST" else None
        client_id = _text(form, "client_id") if form else request.query_params.get("client_id", "")
        failure = _check_tenant(self.state, tenant) or _check_client(self.state, tenant, client_id)
        if failure:
            return self._page(400, view="result", ok=False, message=failure.message)
        if form is None:
            return self._page(
                view="consent",
                action=request.url.path,
                client_id=client_id,
                permissions=_PERMISSIONS,
            )
        if _text(form, "action") != "accept":
            return self._page(view="result", ok=False, message=AadstsFailure(65004).message)
        approve_admin_consent(self.state, client_id)
        return self._page(
            view="result",
            ok=True,
            message=f"Admin consent succeeded. {APP_NAME} may now sign in users of "
            f"{self.state.profile.tenant_name}.",
        )


def create_idp_app(
    state: SimState, base_url: Callable[[], str], extra_routes: list[BaseRoute] | None = None
) -> Starlette:
    """The identity platform as an ASGI app; ``base_url()`` is known only once the socket is bound.

    ``extra_routes`` (the control API) come first so the platform's patterns cannot shadow them.
    """
    platform = _IdentityPlatform(state, base_url)
    return Starlette(routes=[*(extra_routes or []), *platform.routes()])
