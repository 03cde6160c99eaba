"""The simulated identity platform, at the protocol level (in-process ASGI, no sockets).

`starlette.testclient` warns when only `httpx` (not `httpx2`) is installed, and warnings are
errors here; `httpx.ASGITransport` drives the same app without that.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest

from mailgate.sim.idp import DEVICE_CODE_GRANT, approve_admin_consent, create_idp_app, sign_in
from mailgate.sim.profiles import get_profile
from mailgate.sim.state import SimState

BASE = "https://testserver"
CLIENT_ID = "2f7e4c9a-8b1d-4e3f-9a6c-5d0b1e2f3a4b"
UPN = "scanner@contoso.com"
SMTP_SCOPE = "https://outlook.office.com/SMTP.Send"
FULL_SCOPE = f"{SMTP_SCOPE} offline_access openid email"
DESCRIPTION = re.compile(
    r"^AADSTS(\d+): .+\r\nTrace ID: [0-9a-f-]{36}\r\nCorrelation ID: [0-9a-f-]{36}\r\n"
    r"Timestamp: \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$",
    re.DOTALL,
)


@dataclass
class Clock:
    now: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.now


@dataclass
class Idp:
    state: SimState
    clock: Clock
    http: httpx.AsyncClient

    async def devicecode(self, tenant: str = "common", **fields: str) -> httpx.Response:
        data = {"client_id": CLIENT_ID, "scope": FULL_SCOPE} | fields
        return await self.http.post(f"/{tenant}/oauth2/v2.0/devicecode", data=data)

    async def start(self, **fields: str) -> dict[str, Any]:
        response = await self.devicecode(**fields)
        assert response.status_code == 200, response.text
        flow: dict[str, Any] = response.json()
        return flow

    async def token(self, tenant: str = "common", **fields: str) -> httpx.Response:
        data = {"client_id": CLIENT_ID} | fields
        return await self.http.post(f"/{tenant}/oauth2/v2.0/token", data=data)

    async def poll(self, flow: dict[str, Any], **fields: str) -> httpx.Response:
        return await self.token(
            grant_type=DEVICE_CODE_GRANT, device_code=flow["device_code"], **fields
        )

    async def sign_in_tokens(self, upn: str = UPN, **fields: str) -> dict[str, Any]:
        flow = await self.start(**fields)
        assert sign_in(self.state, flow["user_code"], upn, approve=True).ok
        response = await self.poll(flow, client_info="1")
        assert response.status_code == 200, response.text
        tokens: dict[str, Any] = response.json()
        return tokens

    async def refresh(self, refresh_token: str, **fields: str) -> httpx.Response:
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token, "scope": FULL_SCOPE}
        return await self.token(**(data | fields))


def open_idp(profile: str = "global") -> Idp:
    clock = Clock()
    state = SimState.create(get_profile(profile), clock=clock)
    app = create_idp_app(state, lambda: BASE)
    return Idp(state, clock, httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE))


@pytest.fixture
async def idp() -> AsyncIterator[Idp]:
    opened = open_idp()
    async with opened.http:
        yield opened


def aadsts(
    response: httpx.Response, error: str, code: int, host: str = "login.microsoftonline.com"
) -> dict[str, Any]:
    """Check Microsoft's error JSON shape; return the body for further checks."""
    # RFC 6749 section 5.2: 400, or 401 for invalid_client (7000218), as Microsoft does.
    assert response.status_code == (401 if error == "invalid_client" else 400), response.text
    assert response.headers["cache-control"] == "no-store, no-cache"
    body: dict[str, Any] = response.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    match = DESCRIPTION.match(body["error_description"])
    assert match is not None, body["error_description"]
    assert match.group(1) == str(code)
    assert body["trace_id"] in body["error_description"]
    assert body["correlation_id"] in body["error_description"]
    assert body["timestamp"] in body["error_description"]
    assert body["error_uri"] == f"https://{host}/error?code={code}"
    return body


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


# -- discovery ---------------------------------------------------------------------------


async def test_instance_discovery_points_msal_at_the_tenant_document(idp: Idp) -> None:
    response = await idp.http.get(
        "/common/discovery/instance",
        params={
            "api-version": "1.0",
            "authorization_endpoint": "https://testserver/organizations/oauth2/v2.0/authorize",
        },
    )
    body = response.json()
    assert body["tenant_discovery_endpoint"] == (
        f"{BASE}/organizations/v2.0/.well-known/openid-configuration"
    )
    assert body["metadata"][0]["preferred_network"] == "testserver"


@pytest.mark.parametrize(
    ("tenant", "segment", "issuer_tenant"),
    [
        ("common", "common", "{tenantid}"),
        ("organizations", "organizations", "{tenantid}"),
        ("consumers", "consumers", "9188040d-6c67-4c5b-b112-36a304b66dad"),
        (
            "contoso.com",
            "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "72f988bf-86f1-41af-91ab-2d7cd011db47",
        ),
        (
            "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "72f988bf-86f1-41af-91ab-2d7cd011db47",
        ),
    ],
)
async def test_openid_configuration(
    idp: Idp, tenant: str, segment: str, issuer_tenant: str
) -> None:
    response = await idp.http.get(f"/{tenant}/v2.0/.well-known/openid-configuration")
    document = response.json()
    assert document["issuer"] == f"{BASE}/{issuer_tenant}/v2.0"
    for name, path in [
        ("token_endpoint", "oauth2/v2.0/token"),
        ("authorization_endpoint", "oauth2/v2.0/authorize"),
        ("device_authorization_endpoint", "oauth2/v2.0/devicecode"),
        ("jwks_uri", "discovery/v2.0/keys"),
    ]:
        assert document[name] == f"{BASE}/{segment}/{path}"


async def test_unknown_tenant_is_aadsts90002_everywhere(idp: Idp) -> None:
    response = await idp.http.get("/fabrikam.com/v2.0/.well-known/openid-configuration")
    body = aadsts(response, "invalid_tenant", 90002)
    assert "Tenant 'fabrikam.com' not found." in body["error_description"]
    aadsts(await idp.devicecode("fabrikam.com"), "invalid_request", 90002)
    aadsts(await idp.refresh("x", tenant="fabrikam.com"), "invalid_request", 90002)


async def test_id_token_is_signed_with_the_published_key(idp: Idp) -> None:
    tokens = await idp.sign_in_tokens()
    keys = (await idp.http.get("/common/discovery/v2.0/keys")).json()["keys"]
    key = jwt.PyJWK(keys[0]).key
    claims = jwt.decode(tokens["id_token"], key, algorithms=["RS256"], audience=CLIENT_ID)
    assert claims["iss"] == f"{BASE}/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0"


# -- /devicecode -------------------------------------------------------------------------


async def test_devicecode_answers_like_microsoft(idp: Idp) -> None:
    flow = await idp.start()
    assert set(flow) == {
        "user_code",
        "device_code",
        "verification_uri",
        "expires_in",
        "interval",
        "message",
    }
    assert flow["verification_uri"] == "https://microsoft.com/devicelogin"
    assert (flow["expires_in"], flow["interval"]) == (900, 5)
    assert re.fullmatch(r"[A-Z0-9]{9}", flow["user_code"])
    assert flow["message"] == (
        "To sign in, use a web browser to open the page https://microsoft.com/devicelogin "
        f"and enter the code {flow['user_code']} to authenticate."
    )
    assert idp.state.counters.devicecode_requests == 1


async def test_21vianet_uses_deviceloginchina_and_its_own_resource() -> None:
    opened = open_idp("21vianet")
    async with opened.http as http:
        response = await opened.devicecode(scope="https://partner.outlook.cn/SMTP.Send openid")
        flow = response.json()
        assert flow["verification_uri"] == "https://microsoft.com/deviceloginchina"
        assert (await http.get("/deviceloginchina")).status_code == 200
        global_scope = await opened.devicecode(scope=FULL_SCOPE)
        body = aadsts(global_scope, "invalid_scope", 70011, host="login.partner.microsoftonline.cn")
        assert f"The scope {SMTP_SCOPE} isn't valid." in body["error_description"]


@pytest.mark.parametrize(
    ("fields", "switches", "error", "code", "text"),
    [
        ({}, {"app_not_found": True}, "unauthorized_client", 700016, f"identifier '{CLIENT_ID}'"),
        ({"client_id": "2f7e4c9a-8b1d-4e3f-9a6c"}, {}, "unauthorized_client", 700016, "not found"),
        ({"client_id": ""}, {}, "invalid_request", 900144, "parameter: 'client_id'."),
        ({}, {"single_tenant_app": True}, "invalid_request", 50194, "/common endpoint"),
        ({"scope": ""}, {}, "invalid_request", 900144, "parameter: 'scope'."),
        ({"scope": "SMTP.Send openid"}, {}, "invalid_scope", 70011, "The scope SMTP.Send isn't"),
    ],
)
async def test_devicecode_errors(
    idp: Idp, fields: dict[str, str], switches: dict[str, bool], error: str, code: int, text: str
) -> None:
    idp.state.set_scenario(**switches)
    body = aadsts(await idp.devicecode(**fields), error, code)
    assert text in body["error_description"]


async def test_single_tenant_app_works_on_its_tenant(idp: Idp) -> None:
    idp.state.set_scenario(single_tenant_app=True)
    assert (await idp.devicecode("contoso.onmicrosoft.com")).status_code == 200


# -- polling -----------------------------------------------------------------------------


async def test_polling_until_approved_then_code_is_spent(idp: Idp) -> None:
    flow = await idp.start()
    body = aadsts(await idp.poll(flow), "authorization_pending", 70016)
    assert body["error_description"].startswith(
        "AADSTS70016: OAuth 2.0 device flow error. Authorization is pending. Continue polling."
    )
    assert sign_in(idp.state, flow["user_code"], UPN, approve=True).ok
    assert (await idp.poll(flow)).status_code == 200
    aadsts(await idp.poll(flow), "bad_verification_code", 70018)
    assert idp.state.counters.device_code_grants == 3


async def test_declined_expired_and_unknown_codes(idp: Idp) -> None:
    declined = await idp.start()
    outcome = sign_in(idp.state, declined["user_code"], UPN, approve=False)
    assert not outcome.ok
    aadsts(await idp.poll(declined), "authorization_declined", 70000)

    expired = await idp.start()
    idp.clock.now += 901
    body = aadsts(await idp.poll(expired), "expired_token", 70020)
    assert "This device code has expired." in body["error_description"]
    assert sign_in(idp.state, expired["user_code"], UPN, approve=True).message.startswith(
        "That code has expired."
    )

    aadsts(
        await idp.poll({"device_code": "DAQABIQEAAADnot-a-code"}), "bad_verification_code", 70018
    )
    aadsts(await idp.token(grant_type=DEVICE_CODE_GRANT), "invalid_request", 900144)


async def test_user_declines_switch_turns_approval_into_decline(idp: Idp) -> None:
    idp.state.set_scenario(user_declines=True)
    flow = await idp.start()
    assert not sign_in(idp.state, flow["user_code"], UPN, approve=True).ok
    aadsts(await idp.poll(flow), "authorization_declined", 70000)


async def test_unknown_account_leaves_the_code_pending(idp: Idp) -> None:
    flow = await idp.start()
    outcome = sign_in(idp.state, flow["user_code"], "nobody@contoso.com", approve=True)
    assert outcome.message.startswith("AADSTS50034: The user account nobody@contoso.com does not")
    assert sign_in(idp.state, flow["user_code"], UPN, approve=True).ok


def _disable(state: SimState) -> None:
    mailbox = state.directory.get(UPN)
    assert mailbox is not None
    mailbox.account_enabled = False


def _lock(state: SimState) -> None:
    mailbox = state.directory.get(UPN)
    assert mailbox is not None
    mailbox.locked = True


def _require_mfa(state: SimState) -> None:
    mailbox = state.directory.get(UPN)
    assert mailbox is not None
    mailbox.mfa_required = True


def _switch(**changes: Any) -> Callable[[SimState], None]:
    def arrange(state: SimState) -> None:
        state.set_scenario(**changes)

    return arrange


@pytest.mark.parametrize(
    ("arrange", "error", "code", "suberror", "page_ok"),
    [
        (_switch(consent_required="user"), "invalid_grant", 65001, "consent_required", False),
        (_switch(consent_required="admin"), "invalid_grant", 90094, None, False),
        (_switch(conditional_access_block=True), "invalid_grant", 53003, "message_only", False),
        (_switch(security_policy_block=True), "invalid_grant", 530032, None, False),
        (_switch(security_defaults_block=True), "invalid_grant", 530035, None, False),
        # Entra ID wants a client secret only when the device redeems the code.
        (_switch(public_client_disabled=True), "invalid_client", 7000218, None, True),
        (_disable, "invalid_grant", 50057, None, False),
        (_lock, "invalid_grant", 50053, None, False),
        (_require_mfa, "invalid_grant", 50076, "basic_action", False),
    ],
)
async def test_errors_after_approval(
    idp: Idp,
    arrange: Callable[[SimState], None],
    error: str,
    code: int,
    suberror: str | None,
    page_ok: bool,
) -> None:
    arrange(idp.state)
    flow = await idp.start()
    outcome = sign_in(idp.state, flow["user_code"], UPN, approve=True)
    assert outcome.ok is page_ok
    if not page_ok:
        assert outcome.message.startswith(f"AADSTS{code}: ")
    body = aadsts(await idp.poll(flow), error, code)
    assert body.get("suberror") == suberror


async def test_error_texts(idp: Idp) -> None:
    idp.state.set_scenario(consent_required="user")
    flow = await idp.start()
    sign_in(idp.state, flow["user_code"], UPN, approve=True)
    description = aadsts(await idp.poll(flow), "invalid_grant", 65001)["error_description"]
    assert description.startswith(
        f"AADSTS65001: The user or administrator has not consented to use the application with "
        f"ID '{CLIENT_ID}' named 'mailgate'. Send an interactive authorization request"
    )
    idp.state.set_scenario(consent_required="none", public_client_disabled=True)
    flow = await idp.start()
    sign_in(idp.state, flow["user_code"], UPN, approve=True)
    description = aadsts(await idp.poll(flow), "invalid_client", 7000218)["error_description"]
    assert description.startswith(
        "AADSTS7000218: The request body must contain the following parameter: "
        "'client_assertion' or 'client_secret'."
    )


async def test_correlation_id_echoes_client_request_id(idp: Idp) -> None:
    correlation = "0b9c3f5e-1d2a-4c6b-8e7f-9a0b1c2d3e4f"
    response = await idp.http.post(
        "/common/oauth2/v2.0/token",
        data={"client_id": CLIENT_ID, "grant_type": DEVICE_CODE_GRANT, "device_code": "x"},
        headers={"client-request-id": correlation},
    )
    assert aadsts(response, "bad_verification_code", 70018)["correlation_id"] == correlation


# -- tokens ------------------------------------------------------------------------------


async def test_token_response(idp: Idp) -> None:
    tokens = await idp.sign_in_tokens("jsmith@contoso.onmicrosoft.com")
    assert tokens["token_type"] == "Bearer"
    assert tokens["scope"] == SMTP_SCOPE
    assert isinstance(tokens["expires_in"], int)
    assert 3600 <= tokens["expires_in"] <= 5399
    assert tokens["ext_expires_in"] == tokens["expires_in"]
    grant = idp.state.lookup_access_token(tokens["access_token"])
    assert grant is not None
    assert (grant.upn, grant.client_id, grant.scopes) == (
        "jsmith@contoso.onmicrosoft.com",
        CLIENT_ID,
        [SMTP_SCOPE],
    )
    assert tokens["refresh_token"] in idp.state.refresh_tokens
    claims = claims_of(tokens["id_token"])
    mailbox = idp.state.directory.get("jsmith@contoso.onmicrosoft.com")
    assert mailbox is not None
    assert claims["aud"] == CLIENT_ID
    assert claims["tid"] == "72f988bf-86f1-41af-91ab-2d7cd011db47"
    assert claims["oid"] == mailbox.object_id
    assert claims["preferred_username"] == "jsmith@contoso.onmicrosoft.com"
    # The primary address, not the UPN: the manual's "device e-mail address" (the ID token's `email` claim).
    assert claims["email"] == "john.smith@contoso.com"
    assert claims["name"] == "John Smith"
    assert {"iss", "sub", "iat", "exp"} <= set(claims)
    assert claims_of("x." + tokens["client_info"]) == {
        "uid": mailbox.object_id,
        "utid": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    }


@pytest.mark.parametrize(
    ("scope", "present", "absent"),
    [
        (f"{SMTP_SCOPE} openid", {"id_token"}, {"refresh_token"}),
        (f"{SMTP_SCOPE} offline_access", {"refresh_token"}, {"id_token"}),
        (f"{SMTP_SCOPE} openid profile offline_access", {"id_token", "refresh_token"}, set()),
    ],
)
async def test_tokens_follow_the_requested_scopes(
    idp: Idp, scope: str, present: set[str], absent: set[str]
) -> None:
    tokens = await idp.sign_in_tokens(scope=scope)
    assert present <= set(tokens)
    assert not absent & set(tokens)
    if "id_token" in tokens:
        assert "email" not in claims_of(tokens["id_token"])


async def test_lifetime_switches(idp: Idp) -> None:
    idp.state.set_scenario(access_token_lifetime=120, expires_in_as_string=True)
    tokens = await idp.sign_in_tokens()
    assert tokens["expires_in"] == "120"
    assert tokens["ext_expires_in"] == "120"
    grant = idp.state.lookup_access_token(tokens["access_token"])
    assert grant is not None
    assert grant.expires_at == idp.clock.now + 120


# -- refresh -----------------------------------------------------------------------------


async def test_refresh_rotates_the_refresh_token(idp: Idp) -> None:
    first = (await idp.sign_in_tokens())["refresh_token"]
    response = await idp.refresh(first, client_info="1")
    assert response.status_code == 200, response.text
    second = response.json()
    assert second["refresh_token"] != first
    assert idp.state.refresh_tokens[first].superseded
    assert claims_of(second["id_token"])["preferred_username"] == UPN
    assert "client_info" in second
    # Microsoft keeps a rotated refresh token usable for a while.
    assert (await idp.refresh(first)).status_code == 200
    assert idp.state.counters.refresh_grants == 2


async def test_refresh_requires_scope(idp: Idp) -> None:
    refresh_token = (await idp.sign_in_tokens())["refresh_token"]
    response = await idp.token(grant_type="refresh_token", refresh_token=refresh_token)
    description = aadsts(response, "invalid_request", 900144)["error_description"]
    assert description.startswith(
        "AADSTS900144: The request body must contain the following parameter: 'scope'.\r\n"
    )


@pytest.mark.parametrize(
    ("arrange", "code", "text"),
    [
        (_switch(refresh_revoked=True), 50173, "expired due to it being revoked"),
        (_switch(refresh_expired=True), 700082, "expired due to inactivity"),
        (_disable, 50057, "The user account is disabled."),
        (_switch(conditional_access_block=True), 53003, "Conditional Access"),
    ],
)
async def test_refresh_errors(
    idp: Idp, arrange: Callable[[SimState], None], code: int, text: str
) -> None:
    refresh_token = (await idp.sign_in_tokens())["refresh_token"]
    arrange(idp.state)
    body = aadsts(await idp.refresh(refresh_token), "invalid_grant", code)
    assert text in body["error_description"]


async def test_refresh_token_expires_after_90_days_unused(idp: Idp) -> None:
    refresh_token = (await idp.sign_in_tokens())["refresh_token"]
    idp.clock.now += 89 * 86400
    kept_alive = (await idp.refresh(refresh_token)).json()["refresh_token"]
    idp.clock.now += 91 * 86400
    body = aadsts(await idp.refresh(kept_alive), "invalid_grant", 700082)
    assert body["suberror"] == "bad_token"
    assert "was inactive for 90.00:00:00." in body["error_description"]


async def test_unknown_refresh_token_and_grant_type(idp: Idp) -> None:
    aadsts(await idp.refresh("M.C105_BAY.0.U.-garbage"), "invalid_grant", 70000)
    aadsts(await idp.token(grant_type="password"), "unsupported_grant_type", 70003)
    aadsts(await idp.token(), "invalid_request", 900144)


async def test_token_endpoint_outage_and_delay(idp: Idp) -> None:
    idp.state.set_scenario(token_endpoint="503")
    response = await idp.token(grant_type="refresh_token")
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    idp.state.set_scenario(token_endpoint="slow", token_delay=0.2)
    started = time.monotonic()
    aadsts(await idp.token(grant_type="password"), "unsupported_grant_type", 70003)
    assert time.monotonic() - started >= 0.2
    assert idp.state.counters.token_requests == 2


# -- the pages a person uses -------------------------------------------------------------


async def test_devicelogin_pages(idp: Idp) -> None:
    flow = await idp.start()
    code = flow["user_code"]
    page = await idp.http.get(f"/devicelogin?otc={code}")
    assert f'value="{code}"' in page.text
    assert "<script" not in page.text
    wrong = await idp.http.post("/devicelogin", data={"otc": "AAAAAAAAA"})
    assert "That code didn&#39;t work." in wrong.text
    accounts = await idp.http.post("/devicelogin", data={"otc": code.lower()})
    for mailbox in idp.state.directory:
        assert f'value="{mailbox.upn}"' in accounts.text
        assert mailbox.display_name in accounts.text
    done = await idp.http.post("/devicelogin", data={"otc": code, "upn": UPN, "action": "approve"})
    assert "You have signed in to the mailgate application on your device." in done.text
    assert (await idp.poll(flow)).status_code == 200


async def test_cancel_on_the_page_declines(idp: Idp) -> None:
    flow = await idp.start()
    await idp.http.post("/devicelogin", data={"otc": flow["user_code"], "action": "decline"})
    aadsts(await idp.poll(flow), "authorization_declined", 70000)


async def test_admin_consent_lifts_the_consent_requirement(idp: Idp) -> None:
    idp.state.set_scenario(consent_required="admin")
    flow = await idp.start()
    sign_in(idp.state, flow["user_code"], UPN, approve=True)
    aadsts(await idp.poll(flow), "invalid_grant", 90094)
    approve_admin_consent(idp.state, CLIENT_ID.upper())
    assert "access_token" in await idp.sign_in_tokens()


async def test_admin_consent_page(idp: Idp) -> None:
    idp.state.set_scenario(consent_required="user")
    page = await idp.http.get(f"/common/adminconsent?client_id={CLIENT_ID}")
    for permission in ("SMTP.Send", "offline_access", "openid", "email"):
        assert permission in page.text
    cancelled = await idp.http.post(
        "/common/adminconsent", data={"client_id": CLIENT_ID, "action": "cancel"}
    )
    assert "AADSTS65004: User declined to consent to access the app." in cancelled.text
    accepted = await idp.http.post(
        "/common/adminconsent", data={"client_id": CLIENT_ID, "action": "accept"}
    )
    assert "Admin consent succeeded." in accepted.text
    assert "access_token" in await idp.sign_in_tokens()


async def test_admin_consent_rejects_a_mistyped_client_id(idp: Idp) -> None:
    # A GUID with a digit missing, as in the vendor manual's own consent URL.
    page = await idp.http.get("/common/adminconsent?client_id=2f7e4c9a-8b1d-4e3f-9a6c-5d0b1e2f3a4")
    assert page.status_code == 400
    assert "AADSTS700016: Application with identifier" in page.text


# -- issue 14: where the simulator differed from Microsoft --------------------------------------
async def test_declined_poll_is_microsofts_70000_with_authorization_declined(idp: Idp) -> None:
    flow = await idp.start()
    sign_in(idp.state, flow["user_code"], UPN, approve=False)
    body = aadsts(await idp.poll(flow), "authorization_declined", 70000)
    assert body["error_description"].startswith(
        "AADSTS70000: The request was denied because one or more scopes requested are "
        "unauthorized or expired."
    )


async def test_public_client_flows_turned_off_after_sign_in_refuses_the_refresh(
    idp: Idp,
) -> None:
    refresh_token = (await idp.sign_in_tokens())["refresh_token"]
    idp.state.set_scenario(public_client_disabled=True)
    response = await idp.refresh(refresh_token)
    assert response.status_code == 401  # RFC 6749 section 5.2: invalid_client
    aadsts(response, "invalid_client", 7000218)


@pytest.mark.parametrize(
    ("profile", "accepted"),
    [("global", True), ("consumers", False), ("21vianet", False), ("gcc-high", False)],
)
async def test_outlook_office365_com_scope_only_in_the_worldwide_cloud(
    profile: str, accepted: bool
) -> None:
    scope = "https://outlook.office365.com/SMTP.Send offline_access openid email"
    opened = open_idp(profile)
    async with opened.http:
        response = await opened.devicecode(opened.state.profile.default_tenant, scope=scope)
    if accepted:
        assert response.status_code == 200, response.text
    else:
        aadsts(response, "invalid_scope", 70011, opened.state.profile.login_host)


@pytest.mark.parametrize(
    ("profile", "uri"),
    [
        ("global", "https://microsoft.com/devicelogin"),
        ("21vianet", "https://microsoft.com/deviceloginchina"),
        ("gcc-high", "https://microsoft.com/deviceloginus"),
        ("consumers", "https://www.microsoft.com/link"),
    ],
)
async def test_each_cloud_has_its_verification_page(profile: str, uri: str) -> None:
    opened = open_idp(profile)
    assert opened.state.profile.verification_uri == uri
    async with opened.http:
        path = uri.split(".com", 1)[1]
        assert (await opened.http.get(path)).status_code == 200
