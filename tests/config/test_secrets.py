"""Secret key handling and the SecretBox."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from mailgate.config.errors import SecretKeyError
from mailgate.config.secrets import (
    SecretBox,
    decode_key,
    load_key,
    new_key_text,
    read_key_file,
    write_key_file,
)


def box() -> SecretBox:
    return SecretBox(decode_key(new_key_text(), "test"))


def test_round_trip_and_fresh_nonce() -> None:
    sealed = box()
    first = sealed.encrypt("smtp.password", "hunter2 ü")
    assert sealed.decrypt("smtp.password", first) == "hunter2 ü"
    assert sealed.encrypt("smtp.password", "hunter2 ü") != first
    assert b"hunter2" not in first


def test_ciphertext_is_bound_to_its_name() -> None:
    sealed = box()
    blob = sealed.encrypt("smtp.password", "hunter2")
    with pytest.raises(SecretKeyError, match="changed outside mailgate"):
        sealed.decrypt("token_cache", blob)
    with pytest.raises(SecretKeyError):
        sealed.decrypt("smtp.password", blob[:-1] + bytes([blob[-1] ^ 1]))


def test_key_check_differs_per_key_and_never_shows_the_key() -> None:
    text = new_key_text()
    one, same, other = (SecretBox(decode_key(t, "t")) for t in (text, text, new_key_text()))
    assert one.matches(same.key_check)
    assert not one.matches(other.key_check)
    assert text not in repr(one)
    assert text not in repr(decode_key(text, "t"))


@pytest.mark.parametrize(
    "text",
    ["", "short", "A" * 44, "!" * 44, new_key_text()[:-4]],
    # Fixed ids: a random id would differ between pytest-xdist's workers.
    ids=["empty", "short", "all-A", "not-base64", "truncated"],
)
def test_malformed_keys_are_refused(text: str) -> None:
    with pytest.raises(SecretKeyError, match="not valid: it must be 32 random bytes"):
        decode_key(text, "MAILGATE_SECRET_KEY")


def test_key_file_is_created_0600_and_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    written = write_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_file(path).raw == written.raw
    with pytest.raises(FileExistsError):
        write_key_file(path)
    assert read_key_file(path).raw == written.raw


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "secret.key"
    write_key_file(path)
    path.chmod(mode)
    with pytest.raises(SecretKeyError, match=re.escape(f"chmod 600 {path}")):
        read_key_file(path)


def test_environment_key_wins_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    from_file = write_key_file(path)
    env_text = new_key_text()
    key = load_key(path, {"MAILGATE_SECRET_KEY": env_text})
    assert key is not None
    assert key.origin == "MAILGATE_SECRET_KEY"
    assert key.raw != from_file.raw
    assert load_key(path, {}) == from_file
    assert load_key(tmp_path / "none.key", {}) is None
