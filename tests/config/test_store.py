"""The settings store: round trips, secrets at rest, key checks, init, several writers."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import stat
import threading
from contextlib import closing
from pathlib import Path

import pytest

from mailgate.config.errors import ConfigError, NotInitializedError, SecretKeyError, ValidationError
from mailgate.config.model import AccountState
from mailgate.config.presets import PRESETS
from mailgate.config.secrets import new_key_text
from mailgate.config.store import SECRET_NOT_SET, SECRET_SET, Store, init_data_dir

from .conftest import GUID

PASSWORD = "correct horse battery staple"
TOKEN_CACHE = '{"RefreshToken": {"x": {"secret": "0.AAAA-refresh-token-value"}}}'


def file_digests(data_dir: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(data_dir.iterdir())}


def test_init_creates_private_files(store: Store, data_dir: Path) -> None:
    assert store.created
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((data_dir / "secret.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((data_dir / "mailgate.db").stat().st_mode) == 0o600
    assert store.key_origin == str(data_dir / "secret.key")
    with closing(sqlite3.connect(data_dir / "mailgate.db")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_init_again_changes_nothing(store: Store, data_dir: Path) -> None:
    store.set("sender.address", "scanner@contoso.com")
    store.close()
    before = file_digests(data_dir)
    with init_data_dir(data_dir) as again:
        assert not again.created
        assert again.get("sender.address") == "scanner@contoso.com"
    assert file_digests(data_dir)["secret.key"] == before["secret.key"]


def test_open_without_init_says_run_init(data_dir: Path) -> None:
    with pytest.raises(NotInitializedError, match="Run `mailgate init`"):
        Store.open(data_dir)
    assert not data_dir.exists()
    with Store.open(data_dir, create=True) as created:
        assert created.created


def test_settings_round_trip(store: Store, data_dir: Path) -> None:
    changes = store.apply_provider(
        "exchange-online-21vianet", client_id=GUID, server="127.0.0.1:2525", host="127.0.0.1:4443"
    )
    assert changes["oauth.scope"] == PRESETS["exchange-online-21vianet"].scope
    store.set("sender.allowed", "a@contoso.cn, b@contoso.cn")
    store.close()
    with Store.open(data_dir) as reopened:
        settings = reopened.settings(env={})
        assert settings.outbound.provider == "exchange-online-21vianet"
        assert str(settings.outbound.server) == "127.0.0.1:2525"
        assert settings.outbound.oauth is not None
        assert settings.outbound.oauth.login_host == "127.0.0.1:4443"
        assert settings.sender_allowed == ("a@contoso.cn", "b@contoso.cn")
        assert reopened.get("oauth.client_id") == GUID


def test_set_follows_the_control_panel_rule(store: Store) -> None:
    store.apply_provider("exchange-online", client_id=GUID)
    assert store.set("smtp.server", "relay.example:25") == {
        "smtp.server": "relay.example:25",
        "provider": "none",
    }
    assert store.get("provider") == "none"
    with pytest.raises(ValidationError, match="Valid keys"):
        store.set("smtp.host", "x")
    with pytest.raises(ValidationError, match="cannot be read back"):
        store.get("smtp.password")


def test_show_hides_secrets(store: Store) -> None:
    assert store.all_values()["smtp.password"] == SECRET_NOT_SET
    assert store.set("smtp.password", PASSWORD) == {"smtp.password": SECRET_SET}
    shown = store.all_values()
    assert shown["smtp.password"] == SECRET_SET
    assert PASSWORD not in repr(shown)
    assert store.all_values(show_secrets=True)["smtp.password"] == PASSWORD
    store.set("smtp.password", "")
    assert store.secret("smtp.password") is None


def test_secrets_are_encrypted_at_rest(store: Store, data_dir: Path) -> None:
    store.set("smtp.password", PASSWORD)
    store.set_secret("token_cache", TOKEN_CACHE)
    assert store.secret("token_cache") == TOKEN_CACHE
    store.close()  # checkpoints the WAL into the database file
    raw = b"".join(p.read_bytes() for p in data_dir.iterdir() if p.name != "secret.key")
    for plain in (PASSWORD, "refresh-token-value"):
        assert plain.encode() not in raw
    with closing(sqlite3.connect(data_dir / "mailgate.db")) as db:
        names = db.execute("SELECT name FROM secrets").fetchall()
    assert sorted(names) == [("smtp.password",), ("token_cache",)]


def test_delete_secret(store: Store) -> None:
    store.set_secret("token_cache", TOKEN_CACHE)
    store.delete_secret("token_cache")
    assert store.secret("token_cache") is None
    with pytest.raises(ValidationError):
        store.set_secret("", "x")


def test_account_round_trip(store: Store) -> None:
    assert store.account() is None
    state = AccountState(
        upn="scanner@contoso.partner.onmschina.cn",
        primary_address="scanner@contoso.cn",
        signed_in_at=1_780_000_000.0,
        last_refresh_at=1_780_000_100.0,
        access_token_expires_at=1_780_003_700.0,
    )
    store.save_account(state)
    assert store.account() == state
    failed = AccountState(**{**state.__dict__, "last_error": "AADSTS700082", "last_error_at": 1.0})
    store.save_account(failed)
    assert store.account() == failed
    store.save_account(None)
    assert store.account() is None


@pytest.fixture
def sealed_dir(data_dir: Path) -> Path:
    """A data directory holding an encrypted secret, closed."""
    with init_data_dir(data_dir) as store:
        store.set("smtp.password", PASSWORD)
        store.set("smtp.server", "relay.example:25")
    return data_dir


def test_wrong_key_is_refused_and_nothing_changes(
    sealed_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = file_digests(sealed_dir)
    monkeypatch.setenv("MAILGATE_SECRET_KEY", new_key_text())
    for attempt in (Store.open, init_data_dir):
        with pytest.raises(SecretKeyError, match="does not match this data directory") as caught:
            attempt(sealed_dir)
        assert "restore the key file" in str(caught.value).lower()
        assert file_digests(sealed_dir) == before


def test_wrong_key_file_is_refused(sealed_dir: Path) -> None:
    key_file = sealed_dir / "secret.key"
    key_file.write_text(new_key_text())
    before = file_digests(sealed_dir)
    with pytest.raises(SecretKeyError, match="set MAILGATE_SECRET_KEY"):
        Store.open(sealed_dir)
    assert file_digests(sealed_dir) == before


def test_missing_key_is_refused_and_never_regenerated(sealed_dir: Path) -> None:
    key_file = sealed_dir / "secret.key"
    key_file.rename(sealed_dir.parent / "backup.key")
    before = file_digests(sealed_dir)
    for attempt in (Store.open, init_data_dir):
        with pytest.raises(SecretKeyError, match="is missing") as caught:
            attempt(sealed_dir)
        assert str(key_file) in str(caught.value)
        assert not key_file.exists()
        assert file_digests(sealed_dir) == before
    (sealed_dir.parent / "backup.key").rename(key_file)
    with Store.open(sealed_dir) as restored:
        assert restored.secret("smtp.password") == PASSWORD


def test_key_file_readable_by_others_is_refused(sealed_dir: Path) -> None:
    key_file = sealed_dir / "secret.key"
    key_file.chmod(0o644)
    with pytest.raises(SecretKeyError, match=re.escape(f"chmod 600 {key_file}")):
        Store.open(sealed_dir)


def test_environment_key_at_init_writes_no_key_file(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILGATE_SECRET_KEY", new_key_text())
    with init_data_dir(data_dir) as store:
        store.set_secret("token_cache", TOKEN_CACHE)
        assert store.key_origin == "MAILGATE_SECRET_KEY"
    assert not (data_dir / "secret.key").exists()
    with Store.open(data_dir) as reopened:
        assert reopened.secret("token_cache") == TOKEN_CACHE


def test_several_writers_at_once(sealed_dir: Path) -> None:
    """Two stores (as two processes would) write in turns without losing an update."""
    stores = [Store.open(sealed_dir), Store.open(sealed_dir)]
    errors: list[BaseException] = []

    def write(store: Store, n: int) -> None:
        try:
            for i in range(40):
                store.set_secret(f"s{n}-{i}", str(i))
                store.set("sender.address", f"w{n}@contoso.com")
        except BaseException as error:  # re-raised below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=write, args=(s, n)) for n, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert {stores[0].secret(f"s{n}-39") for n in (0, 1)} == {"39"}
    finally:
        for store in stores:
            store.close()


def test_damaged_database_says_restore(sealed_dir: Path) -> None:
    (sealed_dir / "mailgate.db").write_bytes(b"not a database" * 100)
    with pytest.raises(ConfigError, match="restore it from your backup"):
        Store.open(sealed_dir)
