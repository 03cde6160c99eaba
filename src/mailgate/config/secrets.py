"""Secrets at rest: the SMTP password, the token cache and refresh token.

Theory of operation: one 32-byte key, kept OUTSIDE the database — in MAILGATE_SECRET_KEY
or in the key file `<data dir>/secret.key` (URL-safe base64, mode 0600) that `mailgate
init` creates. From it HKDF derives two independent keys: one for AES-256-GCM, which
encrypts each secret with the secret's name as associated data (a ciphertext copied to
another name does not decrypt), and one for the key check value that the database keeps.
Opening a data directory compares the check value first, so a wrong or missing key is
reported before anything is read or written, and a new key is never made over old data.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mailgate.config.errors import SecretKeyError

ENV_SECRET_KEY = "MAILGATE_SECRET_KEY"  # noqa: S105 - a variable name, not a key
KEY_BYTES = 32
_NONCE_BYTES = 12
_FORMAT_V1 = b"\x01"


@dataclass(frozen=True)
class SecretKey:
    raw: bytes = b""
    #: Where it came from, for messages: the variable's name or the key file's path.
    origin: str = ""

    def __repr__(self) -> str:  # never show the key, even in a traceback
        return f"SecretKey(origin={self.origin!r})"


def new_key_text() -> str:
    """A fresh random key in the form the key file and MAILGATE_SECRET_KEY use."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def decode_key(text: str, origin: str) -> SecretKey:
    try:
        raw = base64.urlsafe_b64decode(text.strip().encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise SecretKeyError(
            f"The secret key in {origin} is not valid: it must be {KEY_BYTES} random bytes in "
            "URL-safe base64 (44 characters). Restore the original key; a new data directory "
            "can use one made by `openssl rand -base64 32 | tr '+/' '-_'`."
        )
    return SecretKey(raw, origin)


def write_key_file(path: Path) -> SecretKey:
    """Create the key file with mode 0600; refuse to replace an existing one."""
    text = new_key_text()
    # O_EXCL: never overwrite a key that may still protect data; 0o600 from the first byte.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(text + "\n")
        file.flush()
        os.fsync(file.fileno())
    return decode_key(text, str(path))


def read_key_file(path: Path) -> SecretKey:
    """Read the key file, refusing one that group or others can read."""
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise SecretKeyError(
            f"The secret key file {path} is not a regular file. Restore the key file."
        )
    if os.name == "posix" and info.st_mode & 0o077:
        raise SecretKeyError(
            f"The secret key file {path} can be read by other users (mode "
            f"{stat.S_IMODE(info.st_mode):04o}). Run `chmod 600 {path}` and try again."
        )
    return decode_key(path.read_text(encoding="ascii"), str(path))


def load_key(key_file: Path, env: Mapping[str, str] | None = None) -> SecretKey | None:
    """MAILGATE_SECRET_KEY if set, else the key file if it exists, else None."""
    env = os.environ if env is None else env
    if env.get(ENV_SECRET_KEY):
        return decode_key(env[ENV_SECRET_KEY], ENV_SECRET_KEY)
    try:
        return read_key_file(key_file)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise SecretKeyError(
            f"Cannot read the secret key file {key_file}: {error.strerror}. Run mailgate as the "
            "user that owns the data directory."
        ) from None


def _derive(raw: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(raw)


class SecretBox:
    """Encrypts and decrypts named secrets with one key (see the module docstring)."""

    def __init__(self, key: SecretKey) -> None:
        self.origin = key.origin
        self._aead = AESGCM(_derive(key.raw, b"mailgate secrets v1"))
        self.key_check = _derive(key.raw, b"mailgate key check v1").hex()

    def __repr__(self) -> str:
        return f"SecretBox(origin={self.origin!r})"

    def matches(self, stored_check: str) -> bool:
        return hmac.compare_digest(self.key_check, stored_check)

    def encrypt(self, name: str, plaintext: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), _aad(name))
        return _FORMAT_V1 + nonce + sealed

    def decrypt(self, name: str, blob: bytes) -> str:
        if blob[:1] != _FORMAT_V1:
            raise SecretKeyError(_damaged(name))
        nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, sealed, _aad(name)).decode("utf-8")
        except InvalidTag:
            raise SecretKeyError(_damaged(name)) from None


def _aad(name: str) -> bytes:
    return b"mailgate secret:" + name.encode("utf-8")


def _damaged(name: str) -> str:
    # The key check passed, so the key is right: the stored value itself was changed.
    return (
        f"The stored secret {name!r} cannot be decrypted although the key is right; the "
        "database was changed outside mailgate. Set that secret again (for the sign-in: "
        "`mailgate login`)."
    )
