"""TokenManager against the simulated identity platform: refresh, single flight, failures."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from mailgate.identity.errors import TokenError
from mailgate.identity.store import MemoryTokenCacheStore, TokenCacheStore
from mailgate.identity.tokens import DAY, AccessToken, TokenManager
from mailgate.sim.server import SimulatorThread
from tests.bounds import HANG
from tests.identity.helpers import FileTokenCacheStore, oauth_for, sign_in, trust_for

HOUR = 3600.0


def later(seconds: float) -> Callable[[], float]:
    """A wall clock moved forward, as if that much time had passed."""
    return lambda: time.time() + seconds


@pytest.fixture
def store(sim: SimulatorThread, tmp_path: Path) -> TokenCacheStore:
    sim.set_scenario(poll_interval=1)
    memory = MemoryTokenCacheStore()
    sign_in(sim, memory, lock_path=tmp_path / "tokens.lock")
    return memory


@pytest.fixture
async def managers(sim: SimulatorThread) -> AsyncIterator[list[TokenManager]]:
    made: list[TokenManager] = []
    yield made
    for manager in made:
        await manager.aclose()


def manager_for(
    sim: SimulatorThread,
    store: TokenCacheStore,
    tmp_path: Path,
    made: list[TokenManager],
    clock: Callable[[], float] = time.time,
) -> TokenManager:
    manager = TokenManager(
        oauth_for(sim), trust_for(sim), store, tmp_path / "tokens.lock", clock=clock
    )
    made.append(manager)
    return manager


async def test_cached_token_without_refresh(
    sim: SimulatorThread, store: TokenCacheStore, tmp_path: Path, managers: list[TokenManager]
) -> None:
    token = await manager_for(sim, store, tmp_path, managers).access_token()
    assert token.upn == "scanner@contoso.com"
    assert sim.state.lookup_access_token(token.token) is not None  # good at SMTP
    assert sim.state.counters.refresh_grants == 0
    assert token.token not in repr(token)


async def test_refresh_ahead_of_expiry_rotates_and_saves(
    sim: SimulatorThread, store: TokenCacheStore, tmp_path: Path, managers: list[TokenManager]
) -> None:
    before_cache = store.load()
    before = store.load_account()
    assert before is not None
    manager = manager_for(sim, store, tmp_path, managers, later(2 * HOUR))
    token = await manager.access_token()
    assert sim.state.counters.refresh_grants == 1
    assert sim.state.lookup_access_token(token.token) is not None
    assert store.load() != before_cache  # the rotated refresh token is persisted
    after = store.load_account()
    assert after is not None
    assert after.last_refresh_at > before.last_refresh_at + HOUR
    assert after.access_token_expires_at == token.expires_at
    assert after.upn == before.upn


async def test_single_flight_in_process(
    sim: SimulatorThread, store: TokenCacheStore, tmp_path: Path, managers: list[TokenManager]
) -> None:
    sim.set_scenario(token_endpoint="slow", token_delay=0.3)
    manager = manager_for(sim, store, tmp_path, managers, later(2 * HOUR))
    tokens = await asyncio.gather(*(manager.access_token() for _ in range(20)))
    assert sim.state.counters.refresh_grants == 1
    assert len({t.token for t in tokens}) == 1


def run_manager_in_thread(manager: TokenManager, results: list[AccessToken]) -> threading.Thread:
    async def use() -> None:
        try:
            results.append(await manager.access_token())
        finally:
            await manager.aclose()

    thread = threading.Thread(target=asyncio.run, args=(use(),))
    thread.start()
    return thread


def test_single_flight_between_managers(sim: SimulatorThread, tmp_path: Path) -> None:
    sim.set_scenario(poll_interval=1)
    shared = FileTokenCacheStore(tmp_path / "store.json")
    sign_in(sim, shared, lock_path=tmp_path / "tokens.lock")
    sim.set_scenario(token_endpoint="slow", token_delay=0.3)
    results: list[AccessToken] = []
    threads = [
        run_manager_in_thread(
            TokenManager(
                oauth_for(sim),
                trust_for(sim),
                shared,
                tmp_path / "tokens.lock",
                clock=later(2 * HOUR),
            ),
            results,
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.join(30)
    assert len(results) == 2
    assert sim.state.counters.refresh_grants == 1
    assert results[0].token == results[1].token


CHILD = """
import asyncio, json, sys, time
from pathlib import Path
from mailgate.config.model import OAuthConfig, TrustConfig
from mailgate.identity.tokens import TokenManager
from tests.identity.helpers import FileTokenCacheStore

args = json.loads(sys.argv[1])
async def main() -> None:
    manager = TokenManager(OAuthConfig(**args["oauth"]), TrustConfig(ca_bundle=Path(args["ca"])),
                           FileTokenCacheStore(Path(args["store"])), Path(args["lock"]),
                           clock=lambda: time.time() + 7200)
    token = await manager.access_token()
    await manager.aclose()
    print(token.token[-16:])
asyncio.run(main())
"""


def test_single_flight_between_processes(sim: SimulatorThread, tmp_path: Path) -> None:
    """Two concurrent `mailgate send`s on one data directory share one refresh."""
    sim.set_scenario(poll_interval=1)
    shared = FileTokenCacheStore(tmp_path / "store.json")
    sign_in(sim, shared, lock_path=tmp_path / "tokens.lock")
    sim.set_scenario(token_endpoint="slow", token_delay=0.5)
    oauth = oauth_for(sim)
    args = json.dumps(
        {
            "oauth": {
                "login_host": oauth.login_host,
                "tenant": oauth.tenant,
                "client_id": oauth.client_id,
                "scope": oauth.scope,
            },
            "ca": str(sim.ca_path),
            "store": str(tmp_path / "store.json"),
            "lock": str(tmp_path / "tokens.lock"),
        }
    )
    root = Path(__file__).resolve().parents[2]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, args],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [child.communicate(timeout=HANG) for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs
    assert sim.state.counters.refresh_grants == 1
    assert outputs[0][0] == outputs[1][0]


@pytest.mark.parametrize(
    ("switch", "code"),
    [("refresh_revoked", "AADSTS50173"), ("refresh_expired", "AADSTS700082")],
)
async def test_dead_refresh_token_needs_sign_in(
    sim: SimulatorThread,
    store: TokenCacheStore,
    tmp_path: Path,
    managers: list[TokenManager],
    switch: str,
    code: str,
) -> None:
    sim.set_scenario(**{switch: True})
    manager = manager_for(sim, store, tmp_path, managers, later(2 * HOUR))
    with pytest.raises(TokenError) as caught:
        await manager.access_token()
    problem = caught.value.problem
    assert problem.code == code
    assert problem.needs_sign_in
    assert not problem.retryable
    account = store.load_account()
    assert account is not None
    assert account.last_error == code
    health = manager.health()
    assert health is not None
    assert health.needs_sign_in


async def test_token_endpoint_503_is_retryable(
    sim: SimulatorThread, store: TokenCacheStore, tmp_path: Path, managers: list[TokenManager]
) -> None:
    sim.set_scenario(token_endpoint="503")
    manager = manager_for(sim, store, tmp_path, managers, later(2 * HOUR))
    with pytest.raises(TokenError) as caught:
        await manager.access_token()
    assert caught.value.problem.retryable
    assert not caught.value.problem.needs_sign_in
    account = store.load_account()
    assert account is not None
    assert account.last_error == caught.value.problem.code


async def test_503_inside_margin_keeps_the_current_token(
    sim: SimulatorThread, store: TokenCacheStore, tmp_path: Path, managers: list[TokenManager]
) -> None:
    account = store.load_account()
    assert account is not None
    assert account.access_token_expires_at is not None
    sim.set_scenario(token_endpoint="503")
    # 2 minutes before expiry: due (5-minute margin) but still usable.
    when = account.access_token_expires_at - 120
    manager = manager_for(sim, store, tmp_path, managers, lambda: when)
    token = await manager.access_token()
    assert token.expires_at == account.access_token_expires_at
    assert sim.state.lookup_access_token(token.token) is not None


async def test_refresh_after_rejection(
    sim: SimulatorThread, store: TokenCacheStore, tmp_path: Path, managers: list[TokenManager]
) -> None:
    manager = manager_for(sim, store, tmp_path, managers)
    first = await manager.access_token()
    second = await manager.refresh(rejected=first)
    assert second.token != first.token
    assert sim.state.counters.refresh_grants == 1


async def test_keep_alive(
    sim: SimulatorThread, store: TokenCacheStore, tmp_path: Path, managers: list[TokenManager]
) -> None:
    assert not await manager_for(sim, store, tmp_path, managers).keep_alive()
    idle = manager_for(sim, store, tmp_path, managers, later(8 * DAY))
    assert await idle.keep_alive()
    assert sim.state.counters.refresh_grants == 1
    assert not await idle.keep_alive()  # just refreshed
    assert sim.state.counters.refresh_grants == 1


async def test_forget(
    sim: SimulatorThread, store: TokenCacheStore, tmp_path: Path, managers: list[TokenManager]
) -> None:
    manager = manager_for(sim, store, tmp_path, managers)
    await manager.access_token()
    await manager.forget()
    assert store.load_account() is None
    with pytest.raises(TokenError) as caught:
        await manager.access_token()
    assert caught.value.problem.code == "not_signed_in"
    assert caught.value.problem.needs_sign_in


async def test_21vianet_refresh_with_string_expires_in(
    sim_21vianet: SimulatorThread, tmp_path: Path, managers: list[TokenManager]
) -> None:
    sim = sim_21vianet
    sim.set_scenario(poll_interval=1, expires_in_as_string=True)
    memory = MemoryTokenCacheStore()
    await asyncio.to_thread(sign_in, sim, memory, "scanner@contoso.cn")
    manager = manager_for(sim, memory, tmp_path, managers, later(2 * HOUR))
    token = await manager.access_token()
    assert sim.state.counters.refresh_grants == 1
    assert token.expires_at > time.time() + 2 * HOUR + 3000


async def test_one_minute_tokens_refresh_once_per_lifetime(
    sim: SimulatorThread, tmp_path: Path, managers: list[TokenManager]
) -> None:
    """32 concurrent senders with tokens that live a minute (shorter than the usual
    5-minute margin): one refresh per token lifetime, not one per sender."""
    sim.set_scenario(poll_interval=1, access_token_lifetime=60)
    memory = MemoryTokenCacheStore()
    sign_in(sim, memory, lock_path=tmp_path / "tokens.lock")
    offset = [0.0]
    manager = manager_for(sim, memory, tmp_path, managers, lambda: time.time() + offset[0])
    before = sim.state.counters.refresh_grants
    for step in range(3):
        offset[0] = 31.0 * (step + 1)  # past half of each new token's life
        await asyncio.gather(*(manager.access_token() for _ in range(32)))
        assert sim.state.counters.refresh_grants == before + step + 1
