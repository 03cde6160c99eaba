"""Where the token cache and the signed-in account are kept.

The settings store implements :class:`TokenCacheStore` with encryption at rest; the
identity package only needs these four calls. :class:`MemoryTokenCacheStore` is for tests
and for short-lived tools that must not write secrets anywhere.

Callers that share a store between processes hold the token lock file (see
:mod:`mailgate.identity.tokens`) around a load-decide-save sequence, so the store itself
needs no locking beyond making each save atomic.
"""

from __future__ import annotations

import threading
from typing import Protocol

from mailgate.config.model import AccountState


class TokenCacheStore(Protocol):
    def load(self) -> str | None:
        """The serialized MSAL token cache (a secret), or None when there is none."""
        ...

    def save(self, serialized: str) -> None:
        """Replace the serialized token cache; called after every refresh (rotated token)."""
        ...

    def load_account(self) -> AccountState | None:
        """Who is signed in, or None."""
        ...

    def save_account(self, account: AccountState | None) -> None:
        """Record the account state; None forgets it (logout)."""
        ...


class MemoryTokenCacheStore:
    """A TokenCacheStore in memory, safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: str | None = None
        self._account: AccountState | None = None
        #: How many times save() was called, for tests.
        self.saves = 0

    def load(self) -> str | None:
        with self._lock:
            return self._cache

    def save(self, serialized: str) -> None:
        with self._lock:
            self._cache = serialized
            self.saves += 1

    def load_account(self) -> AccountState | None:
        with self._lock:
            return self._account

    def save_account(self, account: AccountState | None) -> None:
        with self._lock:
            self._account = account
