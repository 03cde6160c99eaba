"""Shared helpers for identity tests: settings for a simulator, a sign-in, a file store."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from pathlib import Path

from mailgate.config.model import AccountState, OAuthConfig, TrustConfig
from mailgate.identity.signin import DeviceCodeSignIn, SignInEvent, SignInResult
from mailgate.identity.store import TokenCacheStore
from mailgate.sim.server import SimulatorThread

CLIENT_ID = "9e5f94bc-e8a4-4e73-b8be-63364c29d753"


def oauth_for(sim: SimulatorThread, tenant: str = "common") -> OAuthConfig:
    scope = f"{sim.state.profile.smtp_scope} offline_access openid email"
    return OAuthConfig(sim.idp_hostport, tenant, CLIENT_ID, scope)


def trust_for(sim: SimulatorThread) -> TrustConfig:
    return TrustConfig(ca_bundle=sim.ca_path)


def approve_soon(sim: SimulatorThread, user_code: str, upn: str, approve: bool = True) -> None:
    """Play the person at the verification page, from another thread, a moment later."""

    def person() -> None:
        time.sleep(0.3)
        sim.sign_in(user_code, upn, approve)

    threading.Thread(target=person, daemon=True).start()


def sign_in(
    sim: SimulatorThread,
    store: TokenCacheStore | None = None,
    upn: str = "scanner@contoso.com",
    approve: bool = True,
    events: list[SignInEvent] | None = None,
    lock_path: Path | None = None,
) -> SignInResult:
    flow = DeviceCodeSignIn(
        oauth_for(sim),
        trust_for(sim),
        store,
        lock_path=lock_path,
        on_event=events.append if events is not None else None,
    )
    code = flow.start()
    approve_soon(sim, code.user_code, upn, approve)
    return flow.wait(code)


class FileTokenCacheStore:
    """A plain-JSON TokenCacheStore for tests only (the product's store encrypts)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, object]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        assert isinstance(data, dict)
        return data

    def _write(self, **changes: object) -> None:
        data = {**self._read(), **changes}
        tmp = self.path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)

    def load(self) -> str | None:
        value = self._read().get("cache")
        return value if isinstance(value, str) else None

    def save(self, serialized: str) -> None:
        self._write(cache=serialized)

    def load_account(self) -> AccountState | None:
        value = self._read().get("account")
        return AccountState(**value) if isinstance(value, dict) else None

    def save_account(self, account: AccountState | None) -> None:
        self._write(account=dataclasses.asdict(account) if account else None)
