"""The console's sign-in wizard: one device code sign-in at a time, followed by the page.

Theory of operation. :meth:`SignInWizard.start` builds a DeviceCodeSignIn from the settings
as they are in the store now (the admin has just saved them) and runs start() and wait()
on a worker thread. The sign-in reports events on that thread; they are handed to the
event loop with ``call_soon_threadsafe`` and folded into one :class:`WizardState`, which
the page reads through ``GET /api/signin`` (polled by static/wizard.js). When the sign-in
succeeds, ``on_signed_in`` runs on the loop: the gateway drops its old token and wakes
the delivery engine, so mail held for a sign-in goes out.

A sign-in started with ``guarded`` (held mail and a previous account: the page asked the
administrator) ends with ``on_settled(same_account)``: True releases the held mail, False
(a different account signed in) keeps it held, None (failed, cancelled) gives it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from mailgate.account import device_sign_in
from mailgate.config.model import Settings
from mailgate.config.store import Store
from mailgate.identity.errors import IdentityError, SignInProblem
from mailgate.identity.signin import CodeIssued, Pending, SignedIn, SignInEvent, SignInFailed

#: Problem codes grouped by what the page explains: admin consent, Conditional Access
#: blocking the device code flow, an expired code, a declined prompt.
CONSENT_CODES = frozenset({"AADSTS65001", "AADSTS90094", "AADSTS90095"})
POLICY_CODES = frozenset({"AADSTS53003", "AADSTS530032", "AADSTS530035"})
EXPIRED_CODES = frozenset({"AADSTS70019", "AADSTS70020", "expired_token", "AADSTS70018"})
#: 65004: the person declined the permissions on the consent prompt.
DECLINED_CODES = frozenset({"authorization_declined", "access_denied", "AADSTS65004"})


def failure_kind(problem: SignInProblem) -> str:
    """consent | policy | expired | declined | other: which explanation the page shows."""
    if problem.code in CONSENT_CODES or problem.error == "consent_required":
        return "consent"
    if problem.code in POLICY_CODES:
        return "policy"
    if problem.code in EXPIRED_CODES or problem.error == "expired_token":
        return "expired"
    if problem.code in DECLINED_CODES or problem.error == "authorization_declined":
        return "declined"
    return "other"


@dataclass
class WizardState:
    #: idle | starting | waiting | signed_in | failed
    status: str = "idle"
    user_code: str | None = None
    verification_uri: str | None = None
    expires_at: float | None = None
    upn: str | None = None
    primary_address: str | None = None
    problem: SignInProblem | None = None
    #: The account signed in before this sign-in, and whether held mail waits for its check.
    previous_upn: str | None = None
    guarded: bool = False

    @property
    def account_changed(self) -> bool:
        """A different account than the previous one signed in."""
        return bool(
            self.status == "signed_in"
            and self.previous_upn
            and (self.upn or "").lower() != self.previous_upn.lower()
        )

    def to_json(self, now: float) -> dict[str, Any]:
        data: dict[str, Any] = {
            "status": self.status,
            "user_code": self.user_code,
            "verification_uri": self.verification_uri,
            "expires_at": self.expires_at,
            "seconds_left": max(0, int(self.expires_at - now)) if self.expires_at else None,
            "upn": self.upn,
            "primary_address": self.primary_address,
            "previous_upn": self.previous_upn,
            "guarded": self.guarded,
            "account_changed": self.account_changed,
        }
        if self.problem is not None:
            data["problem"] = {
                "kind": failure_kind(self.problem),
                "code": self.problem.code,
                "title": self.problem.title,
                "explanation": self.problem.explanation,
                "what_to_do": self.problem.what_to_do,
            }
        return data


class SignInWizard:
    def __init__(
        self,
        store: Store,
        on_signed_in: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        on_settled: Callable[[bool | None], Coroutine[Any, Any, object]] | None = None,
    ) -> None:
        self.store = store
        self.on_signed_in = on_signed_in
        self.on_settled = on_settled
        self._settling: set[asyncio.Task[object]] = set()
        self.clock = clock
        self.state = WizardState()
        self._stop = threading.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(
        self, settings: Settings, previous_upn: str | None = None, guarded: bool = False
    ) -> None:
        """Begin a new sign-in, cancelling one still running (its code is then useless)."""
        await self.cancel()
        self._stop = threading.Event()
        self.state = WizardState(status="starting", previous_upn=previous_upn, guarded=guarded)
        loop = asyncio.get_running_loop()
        stop = self._stop

        def on_event(event: SignInEvent) -> None:
            # Runs on the polling thread; the state belongs to the loop.
            if not stop.is_set():
                loop.call_soon_threadsafe(self._apply, event)

        flow = device_sign_in(self.store, settings, on_event)
        self._task = asyncio.create_task(self._run(flow, stop), name="console-sign-in")

    async def _run(self, flow: Any, stop: threading.Event) -> None:
        try:
            await flow.run(should_stop=stop.is_set)
        except IdentityError:
            pass  # reported through the SignInFailed event
        finally:
            flow.close()

    def _apply(self, event: SignInEvent) -> None:
        state = self.state
        if isinstance(event, CodeIssued):
            state.status = "waiting"
            state.user_code = event.code.user_code
            state.verification_uri = event.code.verification_uri
            state.expires_at = event.code.expires_at
        elif isinstance(event, Pending):
            state.status = "waiting"
        elif isinstance(event, SignedIn):
            state.status = "signed_in"
            state.upn = event.result.upn
            state.primary_address = event.result.primary_address
            state.user_code = None
            self.on_signed_in()
            self._settle(state, not state.account_changed)
        elif isinstance(event, SignInFailed):
            state.status = "failed"
            state.problem = event.problem
            state.user_code = None
            self._settle(state, None)

    def _settle(self, state: WizardState, same_account: bool | None) -> None:
        if not state.guarded or self.on_settled is None:
            return
        state.guarded = False
        task = asyncio.get_running_loop().create_task(self.on_settled(same_account))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def cancel(self) -> None:
        self._stop.set()
        task, self._task = self._task, None
        if task is not None and not task.done():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=5)
        if self.state.status in ("starting", "waiting"):
            if self.state.guarded and self.on_settled is not None:
                await self.on_settled(None)
            self.state = WizardState()
