"""Backup and restore of a data directory: settings, account, tokens and queued mail.

Theory of operation. Everything mailgate keeps lives in one SQLite database, except the
secret key (the key file or MAILGATE_SECRET_KEY) that encrypts the tokens and passwords
in it. A backup is a copy of that database made with SQLite's online backup API
(https://sqlite.org/backup.html): it reads one consistent snapshot while `serve` goes on
writing (WAL mode lets readers and the writer work at once), so a message committed
before the snapshot is in the copy whole and one committed after is not in it at all.
The copy is a plain SQLite file (journal_mode DELETE, no -wal beside it), mode 0600,
written under a temporary name and renamed, so a half-written backup never has the name.
It never contains the key: a stolen backup alone reveals the queued mail but not the
sign-in.

Restore goes onto a data directory without a database. It checks the file (a SQLite
database with mailgate's key check), then the key against it, and only then writes:
into a staging directory, opened there through the same `Store.open` every start goes
through (so a backup from an older version is upgraded by the normal start-up path),
then moved into place. Messages the old gateway was sending go back to the queue and
deferred ones are due at once; the next `serve` delivers them.

PostgreSQL (not supported yet) will be backed up with its own tools (pg_dump); the key
stays apart the same way.
"""

from __future__ import annotations

import base64
import os
import shutil
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mailgate import __version__
from mailgate.config.errors import ConfigError, SecretKeyError
from mailgate.config.paths import DB_FILE, db_path, key_path
from mailgate.config.secrets import ENV_SECRET_KEY, SecretBox, SecretKey, load_key, read_key_file
from mailgate.db.writer import sqlite_file
from mailgate.gateway.queue_states import ACTIVE_STATES

#: meta rows that describe the backup file itself; restore removes them.
BACKUP_META = ("backup_created_at", "backup_mailgate_version", "backup_source")
#: Queue states of mail not yet delivered.
ACTIVE = tuple(state.value for state in ACTIVE_STATES)


class BackupError(ConfigError):
    """A backup or restore that cannot be done; the message says what to do."""


@dataclass(frozen=True)
class BackupReport:
    path: Path
    size: int
    #: Messages not yet delivered (queued, deferred, held, sending) in the copy.
    pending: int
    #: Where the key is that the copy needs: a file path or MAILGATE_SECRET_KEY.
    key_origin: str


@dataclass(frozen=True)
class RestoreReport:
    data_dir: Path
    pending: int
    held: int
    backup_created_at: float | None
    backup_version: str | None


def _meta(conn: sqlite3.Connection) -> dict[str, str]:
    try:
        rows = conn.execute("SELECT key, value FROM meta").fetchall()
    except sqlite3.DatabaseError:
        return {}
    return {str(k): str(v) for k, v in rows}


def _pending(conn: sqlite3.Connection, states: tuple[str, ...]) -> int:
    marks = ",".join("?" * len(states))
    try:
        row = conn.execute(
            f"SELECT count(*) FROM queue_messages WHERE state IN ({marks})",  # noqa: S608 - marks only
            states,
        ).fetchone()
    except sqlite3.OperationalError:
        return 0  # a database from before the queue existed
    return int(row[0])


# -- backup ------------------------------------------------------------------------------------
def backup(data_dir: Path, target: Path, key_origin: str, now: float | None = None) -> BackupReport:
    """Copy the data directory's database to *target* (which must not exist)."""
    source = db_path(data_dir)
    if not source.exists():
        raise BackupError(
            f"There is no mailgate database in {data_dir}. Point to the data directory with "
            "--data-dir DIR (a service's is /var/lib/mailgate)."
        )
    target = target.absolute()
    if target.exists():
        raise BackupError(
            f"{target} exists already; give a new file name (backups are never overwritten)."
        )
    if not target.parent.is_dir():
        raise BackupError(f"The folder {target.parent} does not exist; create it first.")
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    # Mode 0600 from the start: the copy holds mail bodies and encrypted tokens.
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        pending = _copy(source, partial, data_dir, time.time() if now is None else now)
        with open(partial, "rb") as file:  # on disk before it gets its name
            os.fsync(file.fileno())
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return BackupReport(target, target.stat().st_size, pending, key_origin)


def _copy(source: Path, partial: Path, data_dir: Path, now: float) -> int:
    try:
        with sqlite_file(source) as src, sqlite_file(partial) as dst:
            # One step (pages=-1): one read transaction, so one consistent snapshot.
            src.backup(dst, pages=-1)
            dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            rows = [
                ("backup_created_at", repr(now)),
                ("backup_mailgate_version", __version__),
                ("backup_source", str(data_dir)),
            ]
            dst.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", rows)
            check = dst.execute("PRAGMA integrity_check").fetchone()
            if check is None or check[0] != "ok":
                raise BackupError(
                    f"The copy failed SQLite's integrity check ({check}); the database in "
                    f"{data_dir} may be damaged. Run `mailgate doctor` and try again."
                )
            return _pending(dst, ACTIVE)
    except sqlite3.Error as error:
        raise BackupError(
            f"Could not copy the database: {error}. Check free space where the backup goes "
            "and that you run as the user owning the data directory, then try again."
        ) from None


# -- restore -----------------------------------------------------------------------------------
def read_backup_meta(backup_file: Path) -> dict[str, str]:
    """The backup's meta rows, after checking it is a whole mailgate backup."""
    not_a_backup = BackupError(
        f"{backup_file} is not a mailgate backup (made by `mailgate backup FILE`). "
        "Check the file name; nothing was changed."
    )
    if not backup_file.is_file():
        raise BackupError(f"There is no file {backup_file}; check the name. Nothing was changed.")
    try:
        with sqlite_file(backup_file, "ro") as conn:
            meta = _meta(conn)
            if "key_check" not in meta:
                raise not_a_backup
            check = conn.execute("PRAGMA integrity_check").fetchone()
    except sqlite3.DatabaseError:
        raise not_a_backup from None
    if check is None or check[0] != "ok":
        raise BackupError(
            f"{backup_file} is damaged (SQLite integrity check: {check}). Use another backup; "
            "nothing was changed."
        )
    return meta


def key_for_restore(
    data_dir: Path, key_file: Path | None, env: Mapping[str, str] | None = None
) -> SecretKey:
    """The key the restored directory will be opened with: --key-file (copied in), or what
    `serve` would use anyway (MAILGATE_SECRET_KEY, else a key file put there by hand)."""
    effective = load_key(key_path(data_dir), env)
    if key_file is not None:
        given = read_key_file(key_file)
        if effective is not None and effective.raw != given.raw:
            raise SecretKeyError(
                f"{effective.origin} holds another key than {key_file}, and mailgate would use "
                f"it. Remove it (or unset {ENV_SECRET_KEY}) and run restore again. Nothing was "
                "changed."
            )
        return given
    if effective is None:
        raise SecretKeyError(
            "This backup's tokens and passwords are encrypted with the secret key of the data "
            "directory it was made from, and backups never contain that key. Give it with "
            "--key-file PATH (that directory's secret.key, e.g. /var/lib/mailgate/secret.key, "
            f"or wherever you keep its copy), or set {ENV_SECRET_KEY}, and run restore again. "
            "Nothing was changed."
        )
    return effective


def check_key(meta: Mapping[str, str], key: SecretKey) -> None:
    if not SecretBox(key).matches(meta["key_check"]):
        raise SecretKeyError(
            f"The secret key from {key.origin} is not the key of this backup: it was made from "
            "a data directory with another key. Give that directory's key (its secret.key "
            f"file) with --key-file PATH or {ENV_SECRET_KEY}. Nothing was changed."
        )


def restore(
    backup_file: Path,
    data_dir: Path,
    key_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    now: float | None = None,
) -> RestoreReport:
    """Restore *backup_file* into *data_dir*, which must have no database yet."""
    if db_path(data_dir).exists():
        raise BackupError(
            f"{data_dir} already has a mailgate database; restore only goes onto a fresh data "
            "directory. Stop `mailgate serve`, move that directory aside (or choose another "
            "with --data-dir), and run restore again. Nothing was changed."
        )
    meta = read_backup_meta(backup_file)
    key = key_for_restore(data_dir, key_file, env)
    check_key(meta, key)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = data_dir / ".restore.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    try:
        pending, held = _stage(backup_file, staging, key, env, now)
        _move_into_place(staging, data_dir, key_file)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    created = meta.get("backup_created_at")
    return RestoreReport(
        data_dir,
        pending,
        held,
        float(created) if created else None,
        meta.get("backup_mailgate_version"),
    )


def _stage(
    backup_file: Path,
    staging: Path,
    key: SecretKey,
    env: Mapping[str, str] | None,
    now: float | None,
) -> tuple[int, int]:
    """Copy the backup into *staging* and open it as every start does; counts of pending
    and held messages."""
    from mailgate.config.store import Store
    from mailgate.gateway.queue import QueueStore

    staged = db_path(staging)
    os.close(os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    with sqlite_file(backup_file, "ro") as src, sqlite_file(staged) as dst:
        src.backup(dst, pages=-1)
        marks = ",".join("?" * len(BACKUP_META))
        dst.execute(f"DELETE FROM meta WHERE key IN ({marks})", BACKUP_META)  # noqa: S608
    # The key goes in through the environment mapping, never into a file here.
    opened_env = {**(os.environ if env is None else env), ENV_SECRET_KEY: _key_text(key)}
    with Store.open(staging, env=opened_env) as store:
        QueueStore(store.engine).resume_restored(time.time() if now is None else now)
    with sqlite_file(staged) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode = DELETE")  # nothing left in a -wal to move
        return _pending(conn, ACTIVE), _pending(conn, ("held",))


def _key_text(key: SecretKey) -> str:
    return base64.urlsafe_b64encode(key.raw).decode("ascii")


def _move_into_place(staging: Path, data_dir: Path, key_file: Path | None) -> None:
    """The key file first (when given), then the database: a database never waits in the
    data directory for a key that is not there."""
    if key_file is not None and not key_path(data_dir).exists():
        target = key_path(data_dir)
        partial = target.with_name(target.name + ".partial")
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key_file.read_bytes())
            out.flush()
            os.fsync(out.fileno())
        partial.replace(target)
    (staging / DB_FILE).replace(db_path(data_dir))
