"""RFC 7662 introspection at the simulated identity platform, and server-side expiry."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from mailgate.sim.idp import create_idp_app
from mailgate.sim.introspection import PATH, introspect
from mailgate.sim.profiles import get_profile
from mailgate.sim.state import SimState

BASE = "https://testserver"
UPN = "jsmith@contoso.onmicrosoft.com"
CLIENT_ID = "9e5f94bc-e8a4-4e73-b8be-63364c29d753"
SCOPES = ["https://outlook.office.com/SMTP.Send", "email"]


class Clock:
    def __init__(self) -> None:
        self.now = 1_780_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state(clock: Clock) -> SimState:
    return SimState.create(get_profile("global"), clock=clock)


@pytest.fixture
async def http(state: SimState) -> AsyncIterator[httpx.AsyncClient]:
    app = create_idp_app(state, lambda: BASE)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE) as client:
        yield client


def test_active_token_facts(state: SimState, clock: Clock) -> None:
    grant = state.issue_access_token(UPN, CLIENT_ID, SCOPES, 3600)
    facts = introspect(state, grant.token, clock())
    assert facts["active"] is True
    assert facts["username"] == UPN
    assert facts["client_id"] == CLIENT_ID
    assert facts["scope"] == "https://outlook.office.com/SMTP.Send email"
    assert facts["exp"] == int(clock() + 3600)
    assert facts["token_type"] == "Bearer"


@pytest.mark.parametrize("case", ["unknown", "expired", "expired server-side", "revoked", "empty"])
def test_inactive_tokens_say_nothing_else(state: SimState, clock: Clock, case: str) -> None:
    token = state.issue_access_token(UPN, CLIENT_ID, SCOPES, 3600).token
    if case == "unknown":
        token = "EwBIBMl6BAAUnever-issued"
    elif case == "expired":
        clock.now += 3600
    elif case == "expired server-side":
        assert state.expire_access_tokens(UPN) == 1
    elif case == "revoked":
        state.revoke_all_tokens(UPN)
    else:
        token = ""
    # RFC 7662 section 2.2: an inactive token gets {"active": false} and no other member.
    assert introspect(state, token, clock()) == {"active": False}


def test_expire_access_tokens_leaves_refresh_tokens_and_other_users(
    state: SimState, clock: Clock
) -> None:
    mine = state.issue_access_token(UPN, CLIENT_ID, SCOPES, 3600)
    theirs = state.issue_access_token("scanner@contoso.com", CLIENT_ID, SCOPES, 3600)
    refresh = state.issue_refresh_token(UPN, CLIENT_ID, SCOPES)
    assert state.expire_access_tokens(UPN) == 1
    assert mine.expires_at == clock()
    assert theirs.expires_at == clock() + 3600
    assert refresh.token in state.refresh_tokens
    assert state.expire_access_tokens() == 1  # the other one; the expired one is not counted


async def test_endpoint_takes_a_form_post_like_dovecot(
    http: httpx.AsyncClient, state: SimState
) -> None:
    token = state.issue_access_token(UPN, CLIENT_ID, SCOPES, 3600).token
    # Dovecot 2.3's passdb oauth2 with introspection_mode = post sends exactly this.
    response = await http.post(PATH, data={"token": token, "client_id": "", "client_secret": ""})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["active"] is True
    assert response.json()["username"] == UPN
    state.expire_access_tokens()
    assert (await http.post(PATH, data={"token": token})).json() == {"active": False}
    missing = await http.post(PATH, data={})
    assert missing.status_code == 400
    assert missing.json() == {"error": "invalid_request"}
