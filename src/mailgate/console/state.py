"""Everything the console's handlers share, kept on ``app.state.console``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mailgate import operations
from mailgate.config.store import Store
from mailgate.console.security import (
    AdminPassword,
    LoginThrottle,
    SessionStore,
    SetupToken,
)
from mailgate.console.wizard import SignInWizard


@dataclass
class Console:
    #: The live gateway of `serve` (tests: any GatewayHandle).
    gateway: operations.GatewayHandle
    setup: SetupToken
    #: The cookie gets the Secure flag when the console itself speaks HTTPS.
    secure_cookies: bool = False
    clock: Callable[[], float] = time.time
    #: (host, port, implicit TLS) of the SMTP listener, for the Status page.
    listeners: list[tuple[str, int, bool]] = field(default_factory=list)
    sessions: SessionStore = field(init=False)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    password: AdminPassword = field(init=False)
    wizard: SignInWizard = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = SessionStore(clock=self.clock)
        self.password = AdminPassword(self.store)
        self.wizard = SignInWizard(self.store, self._signed_in, self.clock, self._settle_held)

    @property
    def store(self) -> Store:
        return self.gateway.store

    def status(self) -> dict[str, Any]:
        """The Status page and /api/status: the same function as `mailgate status --json`."""
        return operations.status(self.gateway, self.clock(), self.listeners)

    async def _settle_held(self, same_account: bool | None) -> int:
        handle = self.gateway
        return await handle.run(operations.settle_held_mail, handle, self.clock(), same_account)

    def _signed_in(self) -> None:
        self.gateway.signed_in()
