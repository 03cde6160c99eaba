"""Device code sign-in (OAuth 2.0 device authorization grant, RFC 8628), as the device does it.

Theory of operation. :meth:`DeviceCodeSignIn.start` asks the identity platform for a
device code (RFC 8628 section 3.1-3.2) and returns the user code and verification URL to
show. :meth:`DeviceCodeSignIn.wait` polls the token endpoint every ``interval`` seconds
(section 3.4), treating ``authorization_pending`` as "keep waiting" and ``slow_down`` as
"wait 5 s longer" (section 3.5), until the person approves, declines, or the code expires.
On success the UPN (``preferred_username``) and primary address (``email``) come from the
ID token, and the token cache and :class:`~mailgate.config.model.AccountState` are saved.

Both calls block (MSAL is synchronous); async callers use :meth:`DeviceCodeSignIn.run` or
``asyncio.to_thread``. Progress is reported as events (:data:`SignInEvent`) to a callback,
never printed, so the terminal (`mailgate login --json` prints ``event.to_json()``) and
the console's wizard share this code. The callback runs on the polling thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msal
import requests

from mailgate.config.model import AccountState, OAuthConfig, TrustConfig
from mailgate.identity import lockfile
from mailgate.identity.errors import (
    IdentityError,
    SignInError,
    SignInProblem,
    classify,
    local_problem,
)
from mailgate.identity.msal_app import SessionHolder, build_app, call_msal, seconds
from mailgate.identity.store import TokenCacheStore
from mailgate.texts import N_

#: RFC 8628 section 3.5: keep polling on these.
_KEEP_POLLING = frozenset({"authorization_pending", "slow_down"})


@dataclass(frozen=True)
class DeviceCode:
    """What to show the person signing in. ``msal_flow`` holds the secret device code."""

    user_code: str
    verification_uri: str
    expires_at: float
    interval: int
    message: str
    msal_flow: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def seconds_left(self, now: float) -> int:
        return max(0, int(self.expires_at - now))

    def to_json(self) -> dict[str, Any]:
        return {
            "user_code": self.user_code,
            "verification_uri": self.verification_uri,
            "expires_at": self.expires_at,
            "interval": self.interval,
            "message": self.message,
        }


@dataclass(frozen=True)
class SignInResult:
    """Who signed in. No tokens: those are in the token cache."""

    upn: str
    primary_address: str
    display_name: str | None
    tenant_id: str | None
    access_token_expires_at: float
    account: AccountState

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["account"]
        return data


@dataclass(frozen=True)
class CodeIssued:
    code: DeviceCode

    def to_json(self) -> dict[str, Any]:
        return {"event": "code", **self.code.to_json()}


@dataclass(frozen=True)
class Pending:
    seconds_left: int

    def to_json(self) -> dict[str, Any]:
        return {"event": "pending", "seconds_left": self.seconds_left}


@dataclass(frozen=True)
class SignedIn:
    result: SignInResult

    def to_json(self) -> dict[str, Any]:
        return {"event": "signed_in", **self.result.to_json()}


@dataclass(frozen=True)
class SignInFailed:
    problem: SignInProblem

    def to_json(self) -> dict[str, Any]:
        return {"event": "error", **self.problem.to_json()}


SignInEvent = CodeIssued | Pending | SignedIn | SignInFailed


def _cancelled() -> SignInProblem:
    return local_problem(
        "cancelled",
        N_("Sign-in cancelled"),
        N_("The sign-in was stopped before it completed."),
        N_("Start the sign-in again when ready."),
    )


def _expired() -> SignInProblem:
    return local_problem(
        "expired_token",
        N_("The code expired"),
        N_("Nobody entered and approved the code before it expired."),
        N_("Run the sign-in again and enter the new code promptly."),
    )


class DeviceCodeSignIn:
    """One device code sign-in for the configured account; ``start()`` then ``wait()``."""

    def __init__(
        self,
        oauth: OAuthConfig,
        trust: TrustConfig,
        store: TokenCacheStore | None = None,
        *,
        lock_path: Path | None = None,
        on_event: Callable[[SignInEvent], None] | None = None,
        clock: Callable[[], float] = time.time,
        session: requests.Session | None = None,
    ) -> None:
        self.oauth = oauth
        self.trust = trust
        self.store = store
        self.lock_path = lock_path
        self._on_event = on_event
        self._clock = clock
        self._session = SessionHolder(trust, session)
        # A new sign-in starts from an empty cache: it replaces whoever was signed in.
        self._cache = msal.SerializableTokenCache()
        self._app: msal.PublicClientApplication | None = None

    def close(self) -> None:
        """Release the HTTPS connection; wait() does this when it finishes."""
        self._session.close()
        self._app = None

    def _emit(self, event: SignInEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)

    def _fail(self, problem: SignInProblem) -> SignInError:
        self.close()
        self._emit(SignInFailed(problem))
        return SignInError(problem)

    def start(self) -> DeviceCode:
        """Request a device code (RFC 8628 section 3.1). Raises SignInError."""
        try:
            if self._app is None:
                self._app = build_app(self.oauth, self._session.get(), self._cache)
            app = self._app
            flow: dict[str, Any] = call_msal(
                lambda: app.initiate_device_flow(scopes=self.oauth.msal_scopes), self.oauth
            )
        except IdentityError as exc:
            raise self._fail(exc.problem) from None
        if "user_code" not in flow:
            raise self._fail(classify(flow, self.oauth))
        code = DeviceCode(
            user_code=str(flow["user_code"]),
            verification_uri=str(flow.get("verification_uri") or flow.get("verification_url")),
            expires_at=self._clock() + seconds(flow.get("expires_in"), 900),
            interval=seconds(flow.get("interval"), 5),
            message=str(flow.get("message") or ""),
            msal_flow=flow,
        )
        self._emit(CodeIssued(code))
        return code

    def wait(
        self, code: DeviceCode, should_stop: Callable[[], bool] = lambda: False
    ) -> SignInResult:
        """Poll until the person approves; raises SignInError (declined, expired, policy...)."""
        try:
            reply = self._poll(code, should_stop)
            result = self._signed_in(reply)
        except IdentityError as exc:
            raise self._fail(exc.problem) from None
        self.close()
        self._emit(SignedIn(result))
        return result

    async def run(self, should_stop: Callable[[], bool] = lambda: False) -> SignInResult:
        """start() and wait() on a worker thread; events arrive on that thread."""
        code = await asyncio.to_thread(self.start)
        return await asyncio.to_thread(self.wait, code, should_stop)

    def _poll(self, code: DeviceCode, should_stop: Callable[[], bool]) -> dict[str, Any]:
        app = self._app
        if app is None:
            raise RuntimeError("start() must succeed before wait()")
        flow = code.msal_flow
        passing: SignInProblem | None = None
        while True:
            if should_stop():
                raise IdentityError(_cancelled())
            try:
                # exit_condition=True: one request per call; the waiting is ours, so it can stop.
                reply: dict[str, Any] = call_msal(
                    lambda: app.acquire_token_by_device_flow(flow, exit_condition=lambda _: True),
                    self.oauth,
                )
            except IdentityError as exc:  # no reply at all (network)
                if not exc.problem.retryable:
                    raise
                reply, passing = {"error": "authorization_pending"}, exc.problem
            if "access_token" in reply:
                return reply
            if reply.get("error") not in _KEEP_POLLING:
                problem = classify(reply, self.oauth)
                if not problem.retryable:
                    raise IdentityError(problem)
                # A passing fault (503, throttling): the code stays valid; keep polling.
                passing = problem
            now = self._clock()
            # The server says expired_token itself; this only guards against one that never does.
            if now > code.expires_at + code.interval:
                raise IdentityError(passing or _expired())
            self._emit(Pending(code.seconds_left(now)))
            # MSAL adds 5 s to flow["interval"] on slow_down (RFC 8628 section 3.5).
            self._nap(seconds(flow.get("interval"), code.interval), should_stop)

    @staticmethod
    def _nap(interval: int, should_stop: Callable[[], bool]) -> None:
        # Wall-clock sleep: MSAL warns (an error under our pytest settings) on early polls.
        deadline = time.monotonic() + interval
        pause = threading.Event()
        while (left := deadline - time.monotonic()) > 0:
            if should_stop():
                raise IdentityError(_cancelled())
            pause.wait(min(0.2, left))

    def _signed_in(self, reply: dict[str, Any]) -> SignInResult:
        claims: dict[str, Any] = reply.get("id_token_claims") or {}
        upn = str(claims.get("preferred_username") or "")
        if not upn:
            raise IdentityError(
                local_problem(
                    "no_id_token",
                    N_("No account name in the reply"),
                    N_(
                        "Microsoft's reply had no ID token with the account's name "
                        "(preferred_username)."
                    ),
                    N_(
                        "Make sure the scope setting includes openid and email, then sign in again."
                    ),
                )
            )
        now = self._clock()
        expires_at = now + seconds(reply.get("expires_in"), 3600)
        account = AccountState(
            upn=upn,
            primary_address=str(claims.get("email") or upn),
            signed_in_at=now,
            last_refresh_at=now,
            access_token_expires_at=expires_at,
        )
        self._persist(account)
        return SignInResult(
            upn=upn,
            primary_address=account.primary_address,
            display_name=claims.get("name"),
            tenant_id=claims.get("tid"),
            access_token_expires_at=expires_at,
            account=account,
        )

    def _persist(self, account: AccountState) -> None:
        if self.store is None:
            return
        held = lockfile.exclusive(self.lock_path) if self.lock_path else contextlib.nullcontext()
        with held:
            self.store.save(self._cache.serialize())
            self.store.save_account(account)
