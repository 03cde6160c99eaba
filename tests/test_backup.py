"""Backup and restore of a data directory, in process: what the copy holds (and never
holds), that it is consistent while the queue is written, and every refusal of restore.
The end-to-end run with `serve` and the simulator is tests/gateway/test_backup_e2e.py."""

from __future__ import annotations

import contextlib
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailgate.backup import BackupError, backup, restore
from mailgate.cli import main
from mailgate.config.errors import ConfigError, SecretKeyError
from mailgate.config.model import AccountState
from mailgate.config.store import Store, init_data_dir
from mailgate.gateway.queue import Incoming, QueueStore, State
from tests.bounds import HANG
from tests.gateway.e2e_helpers import wait_until

NOW = 1_800_000_000.0
ACCOUNT = AccountState("scanner@contoso.com", "scanner@contoso.com", NOW - 60, NOW - 60)


@contextlib.contextmanager
def _sqlite(path: Path) -> Iterator[sqlite3.Connection]:
    """sqlite3's own `with` commits but never closes (Python 3.13 warns about that)."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def _body(i: int) -> bytes:
    return f"Subject: scan {i}\r\n\r\n".encode() + bytes([65 + i]) * 5000 + b"\r\n"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A data directory with a token, an account, settings and mail in every waiting state."""
    data = tmp_path / "source"
    with init_data_dir(data) as store:
        store.set_secret("token_cache", "refresh-token-plaintext")
        store.save_account(ACCOUNT)
        store.set("listener.port", "2526")
        queue = QueueStore(store.engine)
        ids = [
            queue.accept(Incoming("mfp@printer.local", ("a@fabrikam.com",), _body(i)), NOW)
            for i in range(4)
        ]
        queue.hold(ids[1], NOW, "held by the administrator")
        (deferred,) = queue.claim(NOW, "old-host:/var/lib/mailgate", 900)
        queue.defer(deferred.id, NOW, NOW + 3600, "432 4.3.2 busy", "deferred")
        queue.claim(NOW, "old-host:/var/lib/mailgate", 900)  # left "sending": the old gateway died
    return data


def _key_text(data: Path) -> str:
    return (data / "secret.key").read_text().strip()


def _states(data: Path) -> dict[int, tuple[str, float]]:
    with _sqlite(data / "mailgate.db") as conn:
        rows = conn.execute("SELECT id, state, next_attempt_at FROM queue_messages").fetchall()
    return {i: (s, n) for i, s, n in rows}


def test_backup_holds_everything_but_the_key(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "mailgate.backup"
    report = backup(source, target, "the key file", NOW)
    assert report.pending == 4
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not target.with_name(target.name + "-wal").exists()
    raw = target.read_bytes()
    assert _key_text(source).encode() not in raw
    assert b"refresh-token-plaintext" not in raw  # still encrypted
    with _sqlite(target) as copy, _sqlite(source / "mailgate.db") as orig:
        for table in ("secrets", "account", "settings", "queue_bodies", "queue_recipients"):
            query = f"SELECT * FROM {table} ORDER BY 1"  # noqa: S608 - fixed names
            assert copy.execute(query).fetchall() == orig.execute(query).fetchall(), table
        meta = dict(copy.execute("SELECT key, value FROM meta").fetchall())
    assert meta["backup_source"] == str(source)
    assert float(meta["backup_created_at"]) == NOW


def test_backup_never_overwrites(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "exists"
    target.write_text("keep me")
    with pytest.raises(BackupError, match="never overwritten"):
        backup(source, target, "k")
    assert target.read_text() == "keep me"


def test_backup_of_a_missing_directory_says_where_to_point(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="--data-dir"):
        backup(tmp_path / "nothing", tmp_path / "b", "k")


def test_backup_while_the_queue_is_written_is_consistent(source: Path, tmp_path: Path) -> None:
    """Online: each backup taken while messages pour in is a snapshot in which every
    message has its body and recipients (none half-stored)."""
    stop = threading.Event()
    accepted: list[int] = []

    def writer() -> None:
        with Store.open(source) as store:
            queue = QueueStore(store.engine)
            while not stop.is_set() and len(accepted) < 2000:
                accepted.append(
                    queue.accept(Incoming("d@p", ("a@f.com", "b@f.com"), _body(1)), NOW)
                )

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_until(lambda: len(accepted) >= 10, HANG, "the writer to store mail")
        counts = []
        for i in range(3):
            target = tmp_path / f"online-{i}.backup"
            backup(source, target, "k")
            with _sqlite(target) as conn:
                assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
                messages = conn.execute("SELECT count(*) FROM queue_messages").fetchone()[0]
                bodies = conn.execute("SELECT count(*) FROM queue_bodies").fetchone()[0]
                rcpts = conn.execute("SELECT count(*) FROM queue_recipients").fetchone()[0]
            assert messages == bodies
            assert rcpts == 4 + 2 * (messages - 4)
            counts.append(messages)
    finally:
        stop.set()
        thread.join(60)
    assert min(counts) > 4, counts  # every backup was taken while mail poured in
    assert len(accepted) + 4 >= max(counts)


@pytest.fixture
def backup_file(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "b.backup"
    backup(source, target, "k", NOW)
    return target


def test_restore_brings_back_settings_tokens_and_mail(
    source: Path, backup_file: Path, tmp_path: Path
) -> None:
    target = tmp_path / "new"
    report = restore(backup_file, target, source / "secret.key", env={}, now=NOW + 10)
    assert (report.pending, report.held) == (4, 1)
    assert report.backup_created_at == NOW
    assert stat.S_IMODE((target / "secret.key").stat().st_mode) == 0o600
    assert sorted(p.name for p in target.iterdir()) == ["mailgate.db", "secret.key"]
    with Store.open(target, env={}) as store:
        assert store.secret("token_cache") == "refresh-token-plaintext"
        assert store.account() == ACCOUNT
        assert store.values()["listener.port"] == "2526"
        queue = QueueStore(store.engine)
        states = {i.id: i for i in queue.messages()}
    # sending (old gateway's lease) -> queued; deferred -> due now; held stays held
    assert [states[i].state for i in (1, 2, 3, 4)] == [
        State.DEFERRED,
        State.HELD,
        State.QUEUED,
        State.QUEUED,
    ]
    assert states[1].next_attempt_at == NOW + 10
    with _sqlite(target / "mailgate.db") as conn:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        (owner,) = conn.execute("SELECT lease_owner FROM queue_messages WHERE id = 2").fetchone()
    assert not any(k.startswith("backup_") for k in meta)
    assert owner is None


def test_restore_without_the_key_refuses_and_writes_nothing(
    backup_file: Path, tmp_path: Path
) -> None:
    target = tmp_path / "new"
    with pytest.raises(SecretKeyError, match="--key-file PATH") as caught:
        restore(backup_file, target, None, env={})
    assert "Nothing was changed" in str(caught.value)
    assert not target.exists()


def test_restore_with_another_key_refuses(backup_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    init_data_dir(other).close()
    with pytest.raises(SecretKeyError, match="not the key of this backup"):
        restore(backup_file, tmp_path / "new", other / "secret.key", env={})
    assert not (tmp_path / "new").exists()
    # the same through MAILGATE_SECRET_KEY
    env = {"MAILGATE_SECRET_KEY": _key_text(other)}
    with pytest.raises(SecretKeyError, match="not the key of this backup"):
        restore(backup_file, tmp_path / "new", None, env=env)


def test_restore_with_a_conflicting_key_in_place_refuses(
    source: Path, backup_file: Path, tmp_path: Path
) -> None:
    target = tmp_path / "new"
    target.mkdir()
    init_data_dir(tmp_path / "other").close()
    (target / "secret.key").write_bytes((tmp_path / "other" / "secret.key").read_bytes())
    (target / "secret.key").chmod(0o600)
    with pytest.raises(SecretKeyError, match="holds another key"):
        restore(backup_file, target, source / "secret.key", env={})
    assert not (target / "mailgate.db").exists()


def test_restore_with_the_key_already_in_place(
    source: Path, backup_file: Path, tmp_path: Path
) -> None:
    target = tmp_path / "new"
    target.mkdir(mode=0o700)
    (target / "secret.key").write_bytes((source / "secret.key").read_bytes())
    (target / "secret.key").chmod(0o600)
    assert restore(backup_file, target, None, env={}).pending == 4


def test_restore_never_replaces_a_database(source: Path, backup_file: Path, tmp_path: Path) -> None:
    before = (source / "mailgate.db").read_bytes()
    with pytest.raises(BackupError, match="fresh data directory"):
        restore(backup_file, source, source / "secret.key", env={})
    assert (source / "mailgate.db").read_bytes() == before


@pytest.mark.parametrize("content", [b"", b"not a database at all" * 100])
def test_restore_of_something_else_refuses(tmp_path: Path, content: bytes) -> None:
    bogus = tmp_path / "bogus"
    bogus.write_bytes(content)
    with pytest.raises(BackupError, match="not a mailgate backup"):
        restore(bogus, tmp_path / "new", None, env={})


def test_restore_of_a_sqlite_file_that_is_not_ours_refuses(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with _sqlite(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(BackupError, match="not a mailgate backup"):
        restore(other, tmp_path / "new", None, env={})


def test_restore_of_a_newer_schema_refuses(source: Path, backup_file: Path, tmp_path: Path) -> None:
    with _sqlite(backup_file) as conn:
        conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(ConfigError, match="newer mailgate"):
        restore(backup_file, tmp_path / "new", source / "secret.key", env={})
    assert not (tmp_path / "new" / "mailgate.db").exists()


def test_cli_backup_reminds_of_the_key_and_restore_refuses_without_it(
    source: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    target = tmp_path / "cli.backup"
    result = runner.invoke(main, ["--data-dir", str(source), "backup", str(target)])
    assert result.exit_code == 0, result.output
    assert f"It is in {source / 'secret.key'}" in result.output
    assert "NOT in the backup" in result.output
    new = ["--data-dir", str(tmp_path / "new"), "restore", str(target)]
    refused = runner.invoke(main, new, env={"MAILGATE_SECRET_KEY": ""})
    assert refused.exit_code == 1
    assert "--key-file" in refused.output
    restored = runner.invoke(main, [*new, "--key-file", str(source / "secret.key")])
    assert restored.exit_code == 0, restored.output
    assert "4 message(s) wait to be delivered (1 held)" in restored.output
