"""Access tokens for XOAUTH2: refreshed ahead of expiry, one refresh at a time, kept alive.

Theory of operation. The decisions are pure functions of the clock (:func:`refresh_due`,
:func:`keepalive_due`, :func:`resign_in_deadline`, :func:`token_health`). Around them,
:class:`TokenManager` does the I/O:

- **Fast path**: an access token held in memory and not yet due is returned at once.
- **Single flight in a process**: callers queue on one asyncio lock; whoever gets it
  second finds the first one's fresh token and returns it.
- **Single flight across processes**: the refresh runs on a worker thread (MSAL is
  synchronous) holding an ``flock`` on the data directory's lock file, and re-reads the
  persisted cache and account *after* taking the lock, so a refresh another process just
  did is used rather than repeated.
- **Rotation**: Microsoft returns a new refresh token on every refresh; the cache is saved
  whenever MSAL says it changed, before the lock is released.
- **Keep-alive**: a refresh token unused for 90 days dies (AADSTS700082); a refresh after
  a week idle keeps it alive with a wide margin.

Expiry times are taken from our own clock (stored on the AccountState with each refresh),
never from MSAL's cache entries, so that the injected clock is the only clock that decides.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msal
import requests

from mailgate.config.model import AccountState, OAuthConfig, TrustConfig
from mailgate.identity import lockfile
from mailgate.identity.errors import (
    IdentityError,
    SignInProblem,
    TokenError,
    classify,
    code_needs_sign_in,
    not_signed_in,
)
from mailgate.identity.msal_app import SessionHolder, build_app, call_msal, seconds
from mailgate.identity.store import TokenCacheStore

log = logging.getLogger(__name__)

DAY = 86_400.0
#: Refresh this long before the access token expires (Microsoft issues 60-90 minutes).
REFRESH_MARGIN = 5 * 60.0
#: Refresh after this long idle, well inside Microsoft's 90-day inactivity limit.
KEEPALIVE_AFTER = 7 * DAY
#: Refresh tokens expire after 90 days unused (AADSTS700082).
REFRESH_TOKEN_INACTIVITY_LIMIT = 90 * DAY
#: Warn the administrator this long before a re-sign-in would be needed.
RESIGN_IN_WARNING = 14 * DAY
#: A token this close to expiry is not handed out even when a refresh failed.
MIN_USABLE = 30.0


def margin_for(margin: float, issued_at: float | None, expires_at: float | None) -> float:
    """The refresh margin for one token: *margin*, but at most half the token's lifetime.

    A fixed 5-minute margin would make a token that lives less than that due the moment it
    arrives, and every sender would refresh again (a refresh storm); half the lifetime
    keeps one refresh per lifetime whatever the lifetime (Microsoft's: 60-90 minutes).
    """
    if issued_at is None or expires_at is None or expires_at <= issued_at:
        return margin
    return min(margin, (expires_at - issued_at) / 2)


def refresh_due(expires_at: float | None, now: float, margin: float = REFRESH_MARGIN) -> bool:
    """True when the access token should be refreshed now (unknown expiry counts as due)."""
    return expires_at is None or now >= expires_at - margin


def keepalive_due(last_refresh_at: float, now: float, idle: float = KEEPALIVE_AFTER) -> bool:
    """True when the refresh token has been idle long enough to refresh it proactively."""
    return now - last_refresh_at >= idle


def resign_in_deadline(last_refresh_at: float) -> float:
    """When the refresh token dies if nothing refreshes it (AADSTS700082)."""
    return last_refresh_at + REFRESH_TOKEN_INACTIVITY_LIMIT


def still_usable(expires_at: float | None, now: float) -> bool:
    """A token inside the refresh margin but not (nearly) expired can still be sent."""
    return expires_at is not None and now < expires_at - MIN_USABLE


@dataclass(frozen=True)
class TokenHealth:
    """How the stored sign-in stands, for `mailgate status` and the console."""

    access_token_expires_at: float | None
    refresh_due: bool
    keepalive_due: bool
    resign_in_deadline: float
    #: The admin should be told to plan a re-sign-in (deadline near, or a refresh said so).
    resign_in_warning: bool
    needs_sign_in: bool
    last_error: str | None


def token_health(account: AccountState, now: float) -> TokenHealth:
    deadline = resign_in_deadline(account.last_refresh_at)
    dead = code_needs_sign_in(account.last_error) or now >= deadline
    return TokenHealth(
        access_token_expires_at=account.access_token_expires_at,
        refresh_due=refresh_due(account.access_token_expires_at, now),
        keepalive_due=keepalive_due(account.last_refresh_at, now),
        resign_in_deadline=deadline,
        resign_in_warning=dead or now >= deadline - RESIGN_IN_WARNING,
        needs_sign_in=dead,
        last_error=account.last_error,
    )


@dataclass(frozen=True)
class AccessToken:
    """What XOAUTH2 needs: ``user=`` the UPN, ``auth=Bearer`` the token."""

    token: str = field(repr=False)
    upn: str
    expires_at: float
    #: When it was obtained (our clock); None when unknown.
    issued_at: float | None = None

    def due(self, now: float, margin: float) -> bool:
        return refresh_due(
            self.expires_at, now, margin_for(margin, self.issued_at, self.expires_at)
        )


class TokenManager:
    """Valid access tokens for the signed-in account, shared by every sender.

    ``lock_path`` is a file in the data directory that all mailgate processes using the
    same store agree on. ``clock`` is injectable for tests; it must be wall-clock seconds.
    """

    def __init__(
        self,
        oauth: OAuthConfig,
        trust: TrustConfig,
        store: TokenCacheStore,
        lock_path: Path,
        *,
        clock: Callable[[], float] = time.time,
        margin: float = REFRESH_MARGIN,
        keepalive_after: float = KEEPALIVE_AFTER,
        session: requests.Session | None = None,
    ) -> None:
        self.oauth = oauth
        self.trust = trust
        self.store = store
        self.lock_path = lock_path
        self._clock = clock
        self._margin = margin
        self._keepalive_after = keepalive_after
        self._session = SessionHolder(trust, session)
        self._cache = msal.SerializableTokenCache()
        self._app: msal.PublicClientApplication | None = None
        self._current: AccessToken | None = None
        self._lock = asyncio.Lock()

    # -- public ---------------------------------------------------------------------------
    async def access_token(self) -> AccessToken:
        """A token good for at least ``margin`` seconds, refreshing if needed. Raises TokenError."""
        if self._fresh(self._current):
            assert self._current is not None
            return self._current
        async with self._lock:
            if self._fresh(self._current):  # someone refreshed while we queued
                assert self._current is not None
                return self._current
            self._current = await asyncio.to_thread(self._obtain)
            return self._current

    async def refresh(self, rejected: AccessToken | None = None) -> AccessToken:
        """Refresh now, e.g. after the SMTP server refused ``rejected`` (any 535: Exchange's
        5.7.3, Dovecot's 5.7.8) before its expiry."""
        async with self._lock:
            reject = rejected.token if rejected else None
            self._current = await asyncio.to_thread(
                self._obtain, force=reject is None, rejected=reject
            )
            return self._current

    async def keep_alive(self) -> bool:
        """Refresh if the refresh token has idled for ``keepalive_after``; True if it did."""
        account = self.store.load_account()
        if account is None or not keepalive_due(
            account.last_refresh_at, self._clock(), self._keepalive_after
        ):
            return False
        async with self._lock:
            before = account.last_refresh_at
            self._current = await asyncio.to_thread(self._obtain, keepalive=True)
            after = self.store.load_account()
            return after is not None and after.last_refresh_at != before

    def account(self) -> AccountState | None:
        return self.store.load_account()

    def health(self) -> TokenHealth | None:
        account = self.store.load_account()
        return token_health(account, self._clock()) if account else None

    async def aclose(self) -> None:
        """Release the HTTPS connection (the next refresh opens a new one)."""
        async with self._lock:
            self._session.close()
            self._app = None

    def invalidate(self) -> None:
        """Drop the in-memory token (after a new sign-in replaced the account)."""
        self._current = None

    async def forget(self) -> None:
        """Logout: clear the token cache and the account, across processes."""
        async with self._lock:
            await asyncio.to_thread(self._forget)
            self._current = None

    # -- worker thread --------------------------------------------------------------------
    def _fresh(self, token: AccessToken | None) -> bool:
        return token is not None and not token.due(self._clock(), self._margin)

    def _forget(self) -> None:
        with lockfile.exclusive(self.lock_path):
            self.store.save(msal.SerializableTokenCache().serialize())
            self.store.save_account(None)

    def _obtain(
        self, force: bool = False, rejected: str | None = None, keepalive: bool = False
    ) -> AccessToken:
        with lockfile.exclusive(self.lock_path):
            # Re-read under the lock: another process may have refreshed (and rotated) already.
            account = self.store.load_account()
            serialized = self.store.load()
            if account is None or not serialized:
                raise TokenError(not_signed_in())
            self._cache.deserialize(serialized)
            now = self._clock()
            try:
                app = self._ensure_app()
                msal_account = self._msal_account(app, account.upn)
                cached = self._cached_token(account)
            except IdentityError as exc:
                raise self._failed(account, exc.problem, now) from None
            need = (
                force
                or cached is None
                or cached.token == rejected
                or cached.due(now, self._margin)
                or (
                    keepalive and keepalive_due(account.last_refresh_at, now, self._keepalive_after)
                )
            )
            if not need and cached is not None:
                return cached
            # A token Exchange refused is no fallback when the refresh fails: sending it
            # again would only be refused again, and 535 holds all mail for a sign-in.
            usable = None if cached is not None and cached.token == rejected else cached
            return self._refresh(app, msal_account, account, usable, now)

    def _ensure_app(self) -> msal.PublicClientApplication:
        if self._app is None:
            self._app = build_app(self.oauth, self._session.get(), self._cache)
        return self._app

    @staticmethod
    def _msal_account(app: msal.PublicClientApplication, upn: str) -> dict[str, Any]:
        accounts: list[dict[str, Any]] = app.get_accounts(username=upn)
        if not accounts:
            raise IdentityError(not_signed_in())
        return accounts[0]

    def _cached_token(self, account: AccountState) -> AccessToken | None:
        # MSAL's entries carry MSAL's idea of expiry; ours is on the AccountState (see top).
        entries: list[dict[str, Any]] = list(
            self._cache.search(
                msal.SerializableTokenCache.CredentialType.ACCESS_TOKEN,
                query={"client_id": self.oauth.client_id},
            )
        )
        if not entries or account.access_token_expires_at is None:
            return None
        newest = max(entries, key=lambda e: int(e.get("cached_at", 0)))
        return AccessToken(
            str(newest["secret"]),
            account.upn,
            account.access_token_expires_at,
            account.last_refresh_at,
        )

    def _refresh(
        self,
        app: msal.PublicClientApplication,
        msal_account: dict[str, Any],
        account: AccountState,
        cached: AccessToken | None,
        now: float,
    ) -> AccessToken:
        # MSAL sends `scope` with the refresh token, which Microsoft requires (AADSTS900144).
        try:
            reply: dict[str, Any] | None = call_msal(
                lambda: app.acquire_token_silent_with_error(
                    self.oauth.msal_scopes, msal_account, force_refresh=True
                ),
                self.oauth,
            )
        except IdentityError as exc:
            problem = exc.problem
        else:
            if reply is not None and "access_token" in reply:
                return self._refreshed(reply, account, now)
            problem = classify(reply, self.oauth) if reply else not_signed_in()
        error = self._failed(account, problem, now)
        if problem.retryable and cached is not None and still_usable(cached.expires_at, now):
            # A transient failure inside the margin: the old token still works for a while.
            log.warning("token refresh failed (%s); using the current token", problem.code)
            return cached
        raise error

    def _refreshed(self, reply: dict[str, Any], account: AccountState, now: float) -> AccessToken:
        expires_at = now + seconds(reply.get("expires_in"), 3600)
        if self._cache.has_state_changed:
            self.store.save(self._cache.serialize())  # the rotated refresh token
        self.store.save_account(
            dataclasses.replace(
                account,
                last_refresh_at=now,
                access_token_expires_at=expires_at,
                last_error=None,
                last_error_at=None,
            )
        )
        log.info("access token refreshed for %s", account.upn)
        return AccessToken(str(reply["access_token"]), account.upn, expires_at, now)

    def _failed(self, account: AccountState, problem: SignInProblem, now: float) -> TokenError:
        self.store.save_account(
            dataclasses.replace(account, last_error=problem.code, last_error_at=now)
        )
        log.warning("token refresh failed: %s %s", problem.code, problem.title)
        return TokenError(problem)
