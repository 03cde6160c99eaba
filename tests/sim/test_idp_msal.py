"""Real MSAL against the simulated identity platform over HTTPS on 127.0.0.1.

`idp_server` is a local stand-in for the shared simulator fixture: uvicorn in a thread, a
fresh CA, port 0. MSAL's HTTP goes through a session that trusts only that CA and refuses
every host but 127.0.0.1, so a test fails loudly instead of reaching Microsoft.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msal
import pytest
import requests
import uvicorn
from requests.adapters import HTTPAdapter

from mailgate.sim.ca import create_certificates
from mailgate.sim.idp import create_idp_app, sign_in
from mailgate.sim.profiles import get_profile
from mailgate.sim.state import SimState

CLIENT_ID = "2f7e4c9a-8b1d-4e3f-9a6c-5d0b1e2f3a4b"


@dataclass
class RunningIdp:
    base: str
    state: SimState
    ca_path: Path
    #: Client sessions, closed before the server stops so it need not wait for them.
    sessions: list[requests.Session] = field(default_factory=list)

    @property
    def upn(self) -> str:
        return f"scanner@{self.state.profile.mail_domain}"

    def approve(self, user_code: str) -> None:
        assert sign_in(self.state, user_code, self.upn, approve=True).ok


@pytest.fixture(params=["global", "21vianet"])
def idp_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningIdp]:
    certificates = create_certificates(tmp_path)
    state = SimState.create(get_profile(request.param))
    state.set_scenario(poll_interval=1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    base = f"https://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        create_idp_app(state, lambda: base),
        ssl_certfile=str(certificates.server_cert),
        ssl_keyfile=str(certificates.server_key),
        http="h11",
        ws="none",
        lifespan="off",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "simulator did not start"
        assert time.monotonic() < deadline, "simulator did not start in time"
        time.sleep(0.01)
    running = RunningIdp(base, state, certificates.ca_cert)
    try:
        yield running
    finally:
        for session in running.sessions:
            session.close()
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert not thread.is_alive(), "simulator did not stop"


class _LocalOnly(HTTPAdapter):
    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        host = urlsplit(request.url or "").hostname
        if host != "127.0.0.1":
            raise ConnectionRefusedError(f"test tried to reach {request.url}")
        return super().send(request, *args, **kwargs)


def https_session(server: RunningIdp) -> requests.Session:
    session = requests.Session()
    # This machine sets REQUESTS_CA_BUNDLE, which would replace `verify` on every request.
    session.trust_env = False
    session.verify = str(server.ca_path)
    session.mount("https://", _LocalOnly())
    session.mount("http://", _LocalOnly())
    server.sessions.append(session)
    return session


def msal_app(server: RunningIdp, instance_discovery: str | bool | None = None) -> Any:
    discovery = server.base + "/common/discovery/instance"
    return msal.PublicClientApplication(
        CLIENT_ID,
        authority=server.base + "/common",
        instance_discovery=discovery if instance_discovery is None else instance_discovery,
        http_client=https_session(server),
    )


def scopes(server: RunningIdp) -> list[str]:
    # MSAL adds openid, profile and offline_access itself and refuses them from callers.
    return [server.state.profile.smtp_scope, "email"]


def start_flow(app: Any, server: RunningIdp) -> dict[str, Any]:
    flow: dict[str, Any] = app.initiate_device_flow(scopes=scopes(server))
    assert flow["verification_uri"] == server.state.profile.verification_uri
    flow["expires_at"] = time.time() + 20  # bound the wait if nobody approves
    return flow


def approve_later(action: Any, delay: float = 1.5) -> threading.Thread:
    """Approve while MSAL is polling, so it sees authorization_pending first."""

    def run() -> None:
        time.sleep(delay)
        action()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_device_flow_then_silent_refresh(idp_server: RunningIdp) -> None:
    app = msal_app(idp_server)
    flow = start_flow(app, idp_server)
    state = idp_server.state
    approver = approve_later(lambda: idp_server.approve(flow["user_code"]))
    result = app.acquire_token_by_device_flow(flow)
    approver.join()
    assert "access_token" in result, result
    assert state.counters.device_code_grants >= 2  # at least one authorization_pending
    mailbox = state.directory.get(idp_server.upn)
    assert mailbox is not None
    assert result["id_token_claims"]["preferred_username"] == idp_server.upn
    assert result["id_token_claims"]["email"] == mailbox.primary_address
    assert state.lookup_access_token(result["access_token"]) is not None

    (account,) = app.get_accounts()
    assert account["username"] == idp_server.upn
    refreshed = app.acquire_token_silent(scopes(idp_server), account, force_refresh=True)
    assert refreshed is not None
    assert "access_token" in refreshed, refreshed
    assert refreshed["access_token"] != result["access_token"]
    assert state.counters.refresh_grants == 1
    assert sum(grant.superseded for grant in state.refresh_tokens.values()) == 1


def test_device_flow_approved_on_the_page(idp_server: RunningIdp) -> None:
    app = msal_app(idp_server)
    flow = start_flow(app, idp_server)
    browser = https_session(idp_server)
    page = idp_server.base + idp_server.state.profile.devicelogin_path

    def person() -> None:
        browser.get(page, params={"otc": flow["user_code"]}).raise_for_status()
        browser.post(page, data={"otc": flow["user_code"]}).raise_for_status()
        choice = {"otc": flow["user_code"], "upn": idp_server.upn, "action": "approve"}
        done = browser.post(page, data=choice)
        assert "You have signed in" in done.text

    approver = approve_later(person)
    result = app.acquire_token_by_device_flow(flow)
    approver.join()
    assert result["id_token_claims"]["preferred_username"] == idp_server.upn


def test_declined_device_flow(idp_server: RunningIdp) -> None:
    app = msal_app(idp_server)
    flow = start_flow(app, idp_server)
    sign_in(idp_server.state, flow["user_code"], idp_server.upn, approve=False)
    result = app.acquire_token_by_device_flow(flow)
    assert result["error"] == "authorization_declined"
    assert result["error_codes"] == [70000]


def test_failed_silent_refresh_asks_microsoft_for_aliases(idp_server: RunningIdp) -> None:
    """A trap for clients: after a failed silent refresh MSAL looks up the authority's aliases
    at https://login.microsoftonline.com/common/discovery/instance, whatever instance_discovery
    URL it was given. With instance_discovery=False it does not, and returns the error."""
    state = idp_server.state
    for instance_discovery in (None, False):
        app = msal_app(idp_server, instance_discovery)
        flow = start_flow(app, idp_server)
        idp_server.approve(flow["user_code"])
        assert "access_token" in app.acquire_token_by_device_flow(flow)
        (account,) = app.get_accounts()
        state.set_scenario(refresh_revoked=True)
        if instance_discovery is None:
            with pytest.raises(
                ConnectionRefusedError,
                match=r"https://login\.microsoftonline\.com/common/discovery/instance",
            ):
                app.acquire_token_silent(scopes(idp_server), account, force_refresh=True)
        else:
            result = app.acquire_token_silent_with_error(
                scopes(idp_server), account, force_refresh=True
            )
            assert result["error"] == "invalid_grant"
            assert result["error_codes"] == [50173]
        state.set_scenario(refresh_revoked=False)
