"""Device code sign-in against the simulated identity platform."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from mailgate.config.model import OAuthConfig
from mailgate.identity.errors import SignInError
from mailgate.identity.msal_app import instance_discovery_setting
from mailgate.identity.signin import (
    CodeIssued,
    DeviceCodeSignIn,
    Pending,
    SignedIn,
    SignInEvent,
    SignInFailed,
)
from mailgate.identity.store import MemoryTokenCacheStore
from mailgate.sim.server import SimulatorThread
from tests.identity.helpers import CLIENT_ID, approve_soon, oauth_for, sign_in, trust_for


@pytest.fixture(autouse=True)
def fast_polling(request: pytest.FixtureRequest) -> None:
    for name in ("sim", "sim_21vianet"):
        if name in request.fixturenames:
            request.getfixturevalue(name).set_scenario(poll_interval=1)


def failure(
    sim: SimulatorThread, upn: str = "scanner@contoso.com", approve: bool = True
) -> SignInError:
    with pytest.raises(SignInError) as caught:
        sign_in(sim, upn=upn, approve=approve)
    return caught.value


@pytest.mark.parametrize(
    ("host", "setting"),
    [
        ("login.microsoftonline.com", None),
        ("login.partner.microsoftonline.cn", None),
        ("login.microsoftonline.us", None),
        ("127.0.0.1:8443", False),
        ("[::1]:8443", False),
    ],
)
def test_instance_discovery_setting(host: str, setting: bool | None) -> None:
    assert instance_discovery_setting(host) is setting


def test_happy_path(sim: SimulatorThread) -> None:
    store = MemoryTokenCacheStore()
    events: list[SignInEvent] = []
    result = sign_in(sim, store, events=events)
    assert result.upn == "scanner@contoso.com"
    assert result.primary_address == "scanner@contoso.com"
    assert result.access_token_expires_at > result.account.signed_in_at + 3000
    account = store.load_account()
    assert account is not None
    assert account.upn == "scanner@contoso.com"
    assert account.last_error is None
    assert store.load()
    assert isinstance(events[0], CodeIssued)
    assert any(isinstance(e, Pending) for e in events)
    assert isinstance(events[-1], SignedIn)
    code = events[0].code
    assert code.verification_uri == "https://microsoft.com/devicelogin"
    assert len(code.user_code) == 9
    assert code.interval == 1
    # One JSON object per event, with no secret in any of them.
    lines = [json.dumps(e.to_json()) for e in events]
    assert [json.loads(line)["event"] for line in (lines[0], lines[-1])] == ["code", "signed_in"]
    secrets = json.loads(store.load() or "{}")
    for kind in ("AccessToken", "RefreshToken"):
        for entry in secrets[kind].values():
            assert all(entry["secret"] not in line for line in lines)
    assert code.msal_flow["device_code"] not in " ".join(lines) + repr(code)


def test_upn_differs_from_primary_address(sim: SimulatorThread) -> None:
    result = sign_in(sim, upn="jsmith@contoso.onmicrosoft.com")
    assert result.upn == "jsmith@contoso.onmicrosoft.com"
    assert result.primary_address == "john.smith@contoso.com"


def test_declined(sim: SimulatorThread) -> None:
    error = failure(sim, approve=False)
    # Microsoft sends AADSTS70000 (also used for a dead refresh token): `error` decides.
    assert error.problem.code == "AADSTS70000"
    assert error.problem.error == "authorization_declined"
    assert error.problem.title == "Sign-in declined"
    assert error.problem.needs_sign_in


def test_expired(sim: SimulatorThread) -> None:
    sim.set_scenario(device_code_lifetime=2)
    events: list[SignInEvent] = []
    flow = DeviceCodeSignIn(oauth_for(sim), trust_for(sim), on_event=events.append)
    code = flow.start()
    with pytest.raises(SignInError) as caught:
        flow.wait(code)
    assert caught.value.problem.code in {"AADSTS70019", "AADSTS70020", "expired_token"}
    assert "expired" in caught.value.problem.title.lower()
    assert isinstance(events[-1], SignInFailed)
    assert events[-1].to_json()["event"] == "error"


@pytest.mark.parametrize(("mode", "code"), [("user", "AADSTS65001"), ("admin", "AADSTS90094")])
def test_consent_required(sim: SimulatorThread, mode: str, code: str) -> None:
    sim.set_scenario(consent_required=mode)
    problem = failure(sim).problem
    assert problem.code == code
    assert oauth_for(sim).admin_consent_url in problem.what_to_do
    assert problem.what_to_do.startswith("A tenant administrator")


def test_admin_consent_then_success(sim: SimulatorThread) -> None:
    sim.set_scenario(consent_required="admin")
    sim.approve_admin_consent(CLIENT_ID)
    assert sign_in(sim).upn == "scanner@contoso.com"


@pytest.mark.parametrize(
    ("switch", "code", "words"),
    [
        ("conditional_access_block", "AADSTS53003", "Device code flow"),
        ("security_policy_block", "AADSTS530032", "Conditional Access"),
        ("security_defaults_block", "AADSTS530035", "security defaults"),
        ("public_client_disabled", "AADSTS7000218", "Allow public client flows"),
    ],
)
def test_policy_and_registration_errors(
    sim: SimulatorThread, switch: str, code: str, words: str
) -> None:
    sim.set_scenario(**{switch: True})
    problem = failure(sim).problem
    assert problem.code == code
    assert words in problem.what_to_do
    assert not problem.retryable


@pytest.mark.parametrize(
    ("switch", "code", "words"),
    [
        ("app_not_found", "AADSTS700016", "client ID"),
        ("single_tenant_app", "AADSTS50194", "tenant ID or domain"),
    ],
)
def test_errors_at_start(sim: SimulatorThread, switch: str, code: str, words: str) -> None:
    sim.set_scenario(**{switch: True})
    events: list[SignInEvent] = []
    flow = DeviceCodeSignIn(oauth_for(sim), trust_for(sim), on_event=events.append)
    try:
        code_shown = flow.start()
    except SignInError as exc:
        problem = exc.problem
    else:  # the simulator may report it at the first poll instead
        approve_soon(sim, code_shown.user_code, "scanner@contoso.com")
        with pytest.raises(SignInError) as caught:
            flow.wait(code_shown)
        problem = caught.value.problem
    assert problem.code == code
    assert words in problem.what_to_do
    assert isinstance(events[-1], SignInFailed)


def test_unknown_tenant(sim: SimulatorThread) -> None:
    flow = DeviceCodeSignIn(oauth_for(sim, tenant="nosuchtenant.example"), trust_for(sim))
    with pytest.raises(SignInError) as caught:
        flow.start()
    assert caught.value.problem.code == "AADSTS90002"


def test_unreachable_host(sim: SimulatorThread) -> None:
    oauth = OAuthConfig("127.0.0.1:1", "common", CLIENT_ID, oauth_for(sim).scope)
    with pytest.raises(SignInError) as caught:
        DeviceCodeSignIn(oauth, trust_for(sim)).start()
    assert caught.value.problem.code == "network"
    assert caught.value.problem.retryable


def test_cancel(sim: SimulatorThread) -> None:
    stop = threading.Event()
    flow = DeviceCodeSignIn(oauth_for(sim), trust_for(sim))
    code = flow.start()
    threading.Timer(0.5, stop.set).start()
    with pytest.raises(SignInError) as caught:
        flow.wait(code, stop.is_set)
    assert caught.value.problem.code == "cancelled"


def test_21vianet_expires_in_as_string(sim_21vianet: SimulatorThread, tmp_path: Path) -> None:
    sim = sim_21vianet
    sim.set_scenario(expires_in_as_string=True)
    result = sign_in(
        sim, MemoryTokenCacheStore(), upn="scanner@contoso.cn", lock_path=tmp_path / "lock"
    )
    assert isinstance(result.access_token_expires_at, float)
    assert result.access_token_expires_at > result.account.signed_in_at + 3000
    assert result.primary_address == "scanner@contoso.cn"


async def test_run_from_asyncio(sim: SimulatorThread) -> None:
    flow = DeviceCodeSignIn(
        oauth_for(sim),
        trust_for(sim),
        on_event=lambda e: (
            approve_soon(sim, e.code.user_code, "scanner@contoso.com")
            if isinstance(e, CodeIssued)
            else None
        ),
    )
    result = await flow.run()
    assert result.upn == "scanner@contoso.com"
