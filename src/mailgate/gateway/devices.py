"""Local accounts for devices that authenticate to mailgate (AUTH PLAIN/LOGIN).

Devices never authenticate upstream (the vendor manual's "authentication user for sending"
is the device, not a remote user): they sign in to the gateway with
their own account, and relayed mail is always sent by the signed-in mailbox. Passwords
are kept as argon2id hashes; a wrong password costs the same time as a right one.
"""

from __future__ import annotations

import functools
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, delete, insert, select

from mailgate.db.schema import device_accounts
from mailgate.db.writer import write_transaction

_USERNAME = re.compile(r"^[A-Za-z0-9._@+-]{1,200}$")
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verifying against this keeps the time of an unknown user equal to a wrong password.
    Made on first use: hashing costs ~0.4 s, which every command would pay at import."""
    return _hasher.hash(secrets.token_hex(16))


@dataclass(frozen=True)
class DeviceAccount:
    username: str
    created_at: float
    note: str


class DeviceAccounts:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, username: str, password: str, now: float, note: str = "") -> None:
        if not _USERNAME.match(username):
            raise ValueError(
                "a device user name is 1-200 letters, digits and . _ @ + - (no spaces)"
            )
        if len(password) < 8:
            raise ValueError("use a password of at least 8 characters for a device account")
        with write_transaction(self.engine) as conn:
            if conn.execute(
                select(device_accounts.c.username).where(device_accounts.c.username == username)
            ).first():
                raise ValueError(
                    f"device account {username!r} exists; remove it first to set a new password"
                )
            conn.execute(
                insert(device_accounts).values(
                    username=username,
                    password_hash=_hasher.hash(password),
                    created_at=now,
                    note=note,
                )
            )

    def remove(self, username: str) -> bool:
        with write_transaction(self.engine) as conn:
            result = conn.execute(
                delete(device_accounts).where(device_accounts.c.username == username)
            )
            return bool(result.rowcount)

    def list(self) -> list[DeviceAccount]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    device_accounts.c.username, device_accounts.c.created_at, device_accounts.c.note
                ).order_by(device_accounts.c.username)
            ).all()
        return [DeviceAccount(u, c, n) for u, c, n in rows]

    def verify(self, username: str, password: str) -> bool:
        """True when the password is right. CPU-heavy (argon2): call it off the event loop."""
        with self.engine.connect() as conn:
            stored = conn.execute(
                select(device_accounts.c.password_hash).where(
                    device_accounts.c.username == username
                )
            ).scalar()
        try:
            return bool(_hasher.verify(stored or _dummy_hash(), password)) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    def any(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(device_accounts.c.username).limit(1)).first() is not None
