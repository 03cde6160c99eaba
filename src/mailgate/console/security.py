"""The console's locks: the admin password, sessions, CSRF tokens and login throttling.

Theory of operation. There is one administrator. Until an admin password exists, only the
holder of the one-time setup token that `serve` prints may create it; the
token dies with its first use. Sessions are server-side (a random id in an HttpOnly,
SameSite=Strict cookie, nothing signed or readable in the browser) and each carries its
own CSRF token, which every state-changing request must echo in a form field or the
``X-CSRF-Token`` header. Login attempts are throttled per client address by
:class:`LoginThrottle`, a pure object driven by the clock it is given.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from mailgate.config.errors import ValidationError
from mailgate.config.store import Store
from mailgate.texts import N_

#: Secret name of the admin password's argon2id hash (encrypted like every secret).
ADMIN_PASSWORD_SECRET = "console.admin_password_hash"  # noqa: S105 - a name, not a secret
MIN_PASSWORD_LENGTH = 10
#: A session unused this long is gone; the admin signs in again.
SESSION_IDLE = 8 * 3600.0
SESSION_COOKIE = "mailgate_session"
#: Before a session exists (login, setup), CSRF is a double-submit cookie.
PRE_SESSION_COOKIE = "mailgate_presession"

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def check_new_password(password: str, again: str) -> None:
    """Raise ValidationError with the sentence to show when a new password is not usable."""
    if password != again:
        raise ValidationError.of(
            N_("The two passwords differ; type the same password twice.")
        ).in_field("password2")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError.of(
            N_("Choose a password of at least {length} characters."),
            length=str(MIN_PASSWORD_LENGTH),
        ).in_field("password")


class AdminPassword:
    """The admin password's hash, kept as an encrypted secret in the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def exists(self) -> bool:
        return self.store.secret(ADMIN_PASSWORD_SECRET) is not None

    def set(self, password: str) -> None:
        self.store.set_secret(ADMIN_PASSWORD_SECRET, _hasher.hash(password))

    def verify(self, password: str) -> bool:
        """Constant work whether or not a password exists (argon2 is slow on purpose)."""
        stored = self.store.secret(ADMIN_PASSWORD_SECRET)
        try:
            ok = bool(_hasher.verify(stored or _DUMMY_HASH, password))
        except (VerificationError, InvalidHashError):
            return False
        return ok and stored is not None


class SetupToken:
    """The one-time token that lets the first visitor create the admin password."""

    def __init__(self, token: str) -> None:
        self._token: str | None = token or None

    @property
    def active(self) -> bool:
        return self._token is not None

    def matches(self, offered: str) -> bool:
        return self._token is not None and hmac.compare_digest(
            self._token.encode(), offered.encode()
        )

    def consume(self) -> None:
        self._token = None


@dataclass
class Session:
    id: str
    csrf: str
    created_at: float
    last_seen: float


@dataclass
class SessionStore:
    """Server-side sessions; ids are 256-bit random, never derived from anything."""

    clock: Callable[[], float] = time.time
    idle: float = SESSION_IDLE
    _sessions: dict[str, Session] = field(default_factory=dict)

    def create(self) -> Session:
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now)
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        now = self.clock()
        if session is None or now - session.last_seen > self.idle:
            self._sessions.pop(session_id or "", None)
            return None
        session.last_seen = now
        return session

    def end(self, session_id: str | None) -> None:
        self._sessions.pop(session_id or "", None)

    def end_all(self) -> None:
        """After a password change every other browser must sign in again."""
        self._sessions.clear()


def csrf_ok(expected: str, offered: str | None) -> bool:
    return bool(offered) and hmac.compare_digest(expected.encode(), (offered or "").encode())


@dataclass
class _Attempts:
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0


@dataclass
class LoginThrottle:
    """At most ``max_failures`` wrong passwords per ``window`` seconds from one client;
    then that client waits ``lockout`` seconds, doubling with each further lockout."""

    max_failures: int = 5
    window: float = 300.0
    lockout: float = 60.0
    max_lockout: float = 3600.0
    _clients: dict[str, _Attempts] = field(default_factory=dict)
    _strikes: dict[str, int] = field(default_factory=dict)

    def wait(self, client: str, now: float) -> float:
        """Seconds the client must wait before trying again (0: it may try now)."""
        attempts = self._clients.get(client)
        if attempts is None:
            return 0.0
        return max(0.0, attempts.locked_until - now)

    def failed(self, client: str, now: float) -> None:
        attempts = self._clients.setdefault(client, _Attempts())
        attempts.failures = [t for t in attempts.failures if now - t < self.window] + [now]
        if len(attempts.failures) >= self.max_failures:
            strikes = self._strikes.get(client, 0)
            attempts.locked_until = now + min(self.lockout * 2**strikes, self.max_lockout)
            attempts.failures = []
            self._strikes[client] = strikes + 1

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)
        self._strikes.pop(client, None)
