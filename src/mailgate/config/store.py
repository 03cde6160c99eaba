"""The settings store: settings, encrypted secrets and the signed-in account, in one database.

Theory of operation: SQLite file `<data dir>/mailgate.db` through SQLAlchemy Core, so a
PostgreSQL URL can replace it later (only `mailgate.db.writer.sqlite_engine` and `_upsert`
know the dialect). Several processes may use it at once — `serve`, `login`, `config` — so
every write is one transaction of `mailgate.db.writer` that reads and writes together
(no lost updates between processes); a saved token survives a power cut.

Opening checks the secret key against the check value kept in `meta` BEFORE anything else:
a wrong or missing key is an error, and nothing is written or replaced.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    delete,
    inspect,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DatabaseError

from mailgate.config import rules
from mailgate.config.errors import (
    ConfigError,
    NotInitializedError,
    SecretKeyError,
    ValidationError,
)
from mailgate.config.keys import KEYS, SettingValue, defaults, get_key
from mailgate.config.model import AccountState, Settings
from mailgate.config.paths import db_path, key_path
from mailgate.config.secrets import ENV_SECRET_KEY, SecretBox, SecretKey, load_key, write_key_file
from mailgate.db import migrate
from mailgate.db.schema import (
    COMPATIBLE_SCHEMA_VERSION,
    account_table,
    meta_table,
    secrets_table,
    settings_table,
)
from mailgate.db.writer import sqlite_engine, write_transaction

log = logging.getLogger(__name__)

SECRET_SET, SECRET_NOT_SET = "(set)", "(not set)"
_ACCOUNT_FIELDS = [c.name for c in account_table.columns if c.name != "id"]


def _upsert(conn: Connection, table: Table, row: Mapping[str, Any]) -> None:
    key = table.primary_key.columns.values()[0].name
    updates = {k: v for k, v in row.items() if k != key}
    if conn.dialect.name == "postgresql":
        pg = postgresql.insert(table).values(**row)
        conn.execute(pg.on_conflict_do_update(index_elements=[key], set_=updates))
    else:
        lite = sqlite.insert(table).values(**row)
        conn.execute(lite.on_conflict_do_update(index_elements=[key], set_=updates))


def _not_initialized(data_dir: Path, why: str) -> NotInitializedError:
    return NotInitializedError(
        f"{why} Run `mailgate init` to create it there, or point to an existing one with "
        "--data-dir DIR or MAILGATE_DATA_DIR."
    )


def _missing_key(data_dir: Path) -> SecretKeyError:
    kp = key_path(data_dir)
    return SecretKeyError(
        f"The secret key of {data_dir} is missing: there is no key file {kp} and "
        f"{ENV_SECRET_KEY} is not set. The stored secrets need it. Restore the key file "
        f"{kp} from your backup (mode 0600) or set {ENV_SECRET_KEY}. Nothing was changed."
    )


def _wrong_key(data_dir: Path, origin: str) -> SecretKeyError:
    kp = key_path(data_dir)
    extra = ""
    if origin == ENV_SECRET_KEY and kp.exists():
        extra = f" ({ENV_SECRET_KEY} is set and wins over the key file; unset it to use the file.)"
    return SecretKeyError(
        f"The secret key does not match this data directory ({data_dir}); it came from "
        f"{origin}. Restore the key file {kp} or set {ENV_SECRET_KEY} to the key this "
        f"directory was created with.{extra} Nothing was changed."
    )


class Store:
    """Settings, secrets and account state of one data directory. Thread-safe; close() it."""

    def __init__(self, engine: Engine, box: SecretBox, data_dir: Path) -> None:
        self._engine = engine
        self._box = box
        self.data_dir = data_dir
        #: True when init_data_dir created the database just now.
        self.created = False

    @property
    def engine(self) -> Engine:
        """The database engine, for stores that share this database (e.g. the queue).

        Writes go through `mailgate.db.writer.write_transaction`.
        """
        return self._engine

    @property
    def key_origin(self) -> str:
        """Where the secret key came from: the key file's path or MAILGATE_SECRET_KEY."""
        return self._box.origin

    # --- opening ----------------------------------------------------------------------------

    @classmethod
    def open(
        cls, data_dir: Path, create: bool = False, env: Mapping[str, str] | None = None
    ) -> Store:
        """Open an initialised data directory, checking the secret key first.

        With `create=True` a missing data directory is initialised (as `mailgate init`).
        """
        db = db_path(data_dir)
        if not db.exists():
            if create:
                return init_data_dir(data_dir, env)
            raise _not_initialized(data_dir, f"There is no mailgate data directory at {data_dir}.")
        key = load_key(key_path(data_dir), env)
        engine = sqlite_engine(db)
        try:
            box = _verified_box(engine, data_dir, key)
            _upgrade(engine, data_dir)
        except DatabaseError as error:
            engine.dispose()
            raise ConfigError(
                f"Cannot read the database {db}: {error.orig}. If the file is damaged, restore "
                "it from your backup (together with its key)."
            ) from None
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, box, data_dir)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with write_transaction(self._engine) as conn:
            yield conn

    # --- settings ---------------------------------------------------------------------------

    @staticmethod
    def _values(conn: Connection) -> dict[str, SettingValue]:
        values = defaults()
        for key, value in conn.execute(select(settings_table.c.key, settings_table.c.value)):
            if key in values:  # keys a newer version wrote stay untouched but unused
                values[key] = value
        return values

    @staticmethod
    def _write_values(conn: Connection, changes: Mapping[str, SettingValue]) -> None:
        for key, value in changes.items():
            _upsert(conn, settings_table, {"key": key, "value": value})

    def values(self) -> dict[str, SettingValue]:
        """Every non-secret setting as stored (defaults filled in), before display rules."""
        with self._read() as conn:
            return self._values(conn)

    def get(self, key: str) -> SettingValue:
        """One non-secret setting; secrets are write-only here (use `secret()`)."""
        if get_key(key).secret:
            raise ValidationError(
                f"{key} is a secret and cannot be read back; set it again to change it."
            )
        return self.values()[key]

    def set(self, key: str, value: object) -> dict[str, SettingValue]:
        """Validate and set one setting, following the control-panel rule; returns what changed.

        A secret key (smtp.password) goes to the encrypted secrets; an empty value clears it.
        """
        if get_key(key).secret:
            if not isinstance(value, str):
                raise ValidationError(f"{key} expects a text value.")
            if value:
                self.set_secret(key, value)
            else:
                self.delete_secret(key)
            return {key: SECRET_SET if value else SECRET_NOT_SET}
        with self._write() as conn:
            changes = rules.changes_for_set(self._values(conn), key, value)
            self._write_values(conn, changes)
        return changes

    def apply_provider(
        self,
        name: str,
        *,
        client_id: str | None = None,
        server: str | None = None,
        host: str | None = None,
        tenant: str | None = None,
        scope: str | None = None,
    ) -> dict[str, SettingValue]:
        """Choose a provider preset; OAuth presets fill oauth.* (the arguments override)."""
        with self._write() as conn:
            changes = rules.changes_for_provider(
                self._values(conn),
                name,
                client_id=client_id,
                server=server,
                host=host,
                tenant=tenant,
                scope=scope,
            )
            self._write_values(conn, changes)
        return changes

    def import_settings(self, incoming: Mapping[str, object]) -> dict[str, SettingValue]:
        """Set many settings at once (an import), all validated before any is written."""
        with self._write() as conn:
            changes = rules.validate_import(self._values(conn), incoming)
            self._write_values(conn, changes)
        return changes

    def settings(
        self, env: Mapping[str, str] | None = None, allow_incomplete: bool = False
    ) -> Settings:
        """The typed view others consume; raises NotConfiguredError when incomplete, unless
        *allow_incomplete* (then ``settings.configured`` is False)."""
        return rules.build_settings(
            self.values(), os.environ if env is None else env, allow_incomplete
        )

    def all_values(self, show_secrets: bool = False) -> dict[str, SettingValue]:
        """Every key as `config show` presents it; secrets as "(set)"/"(not set)".

        show_secrets=True puts the decrypted values in instead — never for display.
        """
        shown = rules.displayed_values(self.values())
        for key in (k.name for k in KEYS.values() if k.secret):
            plain = self.secret(key)
            if show_secrets:
                shown[key] = plain or ""
            else:
                shown[key] = SECRET_SET if plain is not None else SECRET_NOT_SET
        return shown

    # --- secrets ----------------------------------------------------------------------------

    def secret(self, name: str) -> str | None:
        with self._read() as conn:
            blob = conn.execute(
                select(secrets_table.c.ciphertext).where(secrets_table.c.name == name)
            ).scalar_one_or_none()
        return None if blob is None else self._box.decrypt(name, blob)

    def set_secret(self, name: str, value: str) -> None:
        if not name or len(name) > 64:
            raise ValidationError("A secret's name must have 1 to 64 characters.")
        row = {
            "name": name,
            "ciphertext": self._box.encrypt(name, value),
            "updated_at": time.time(),
        }
        with self._write() as conn:
            _upsert(conn, secrets_table, row)

    def delete_secret(self, name: str) -> None:
        with self._write() as conn:
            conn.execute(delete(secrets_table).where(secrets_table.c.name == name))

    # --- account ----------------------------------------------------------------------------

    def account(self) -> AccountState | None:
        with self._read() as conn:
            row = (
                conn.execute(select(account_table).where(account_table.c.id == 1))
                .mappings()
                .first()
            )
        return None if row is None else AccountState(**{f: row[f] for f in _ACCOUNT_FIELDS})

    def save_account(self, state: AccountState | None) -> None:
        """Record who is signed in; None forgets the account (the token secrets stay)."""
        with self._write() as conn:
            if state is None:
                conn.execute(delete(account_table))
            else:
                _upsert(
                    conn,
                    account_table,
                    {"id": 1, **{f: getattr(state, f) for f in _ACCOUNT_FIELDS}},
                )


def _stored_key_check(conn: Connection) -> str | None:
    if not inspect(conn).has_table("meta"):
        return None
    return conn.execute(
        select(meta_table.c.value).where(meta_table.c.key == "key_check")
    ).scalar_one_or_none()


def _check_schema(conn: Connection, data_dir: Path) -> None:
    version = conn.execute(
        select(meta_table.c.value).where(meta_table.c.key == "schema_version")
    ).scalar_one_or_none()
    if version is not None and int(version) > COMPATIBLE_SCHEMA_VERSION:
        raise NotInitializedError(
            f"{data_dir} was written by a newer mailgate (schema {version}); "
            "upgrade mailgate to use it."
        )


def _upgrade(engine: Engine, data_dir: Path) -> None:
    """Bring an older data directory to this code's schema (after a backup copy)."""
    copy = migrate.upgrade_in_place(engine, db_path(data_dir), str(data_dir))
    if copy is not None:
        log.warning(
            "mailgate: upgraded the database of %s to schema revision %s; the copy from "
            "before is %s (keep it until you are sure you will not go back).",
            data_dir,
            migrate.head(),
            copy,
        )


def _verified_box(engine: Engine, data_dir: Path, key: SecretKey | None) -> SecretBox:
    """Read-only check of the key against the stored check value."""
    with engine.connect() as conn, conn.begin():
        stored = _stored_key_check(conn)
        if stored is None:
            why = f"The database in {data_dir} was left unfinished by an interrupted init."
            raise _not_initialized(data_dir, why)
        _check_schema(conn, data_dir)
    if key is None:
        raise _missing_key(data_dir)
    box = SecretBox(key)
    if not box.matches(stored):
        raise _wrong_key(data_dir, box.origin)
    return box


def init_data_dir(data_dir: Path, env: Mapping[str, str] | None = None) -> Store:
    """Create (or, when it exists, just open) a data directory: database and key file.

    Idempotent: an existing directory is opened and checked, never changed; a key file is
    never replaced, and no key is generated for a database that already has a key check.
    The directory is created with mode 0700, the key file and database with 0600.
    """
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    db = db_path(data_dir)
    key = load_key(key_path(data_dir), env)
    engine = sqlite_engine(db)
    try:
        with write_transaction(engine) as conn:
            box, created = _initialise(conn, data_dir, key)
        if created:
            db.chmod(0o600)
        else:
            _upgrade(engine, data_dir)
    except BaseException:
        engine.dispose()
        raise
    store = Store(engine, box, data_dir)
    store.created = created
    return store


def _initialise(conn: Connection, data_dir: Path, key: SecretKey | None) -> tuple[SecretBox, bool]:
    """Inside one write transaction: verify an existing database, or create the schema."""
    stored = _stored_key_check(conn)
    if stored is not None:
        if key is None:
            raise _missing_key(data_dir)  # never a new key over encrypted data
        box = SecretBox(key)
        if not box.matches(stored):
            raise _wrong_key(data_dir, box.origin)
        _check_schema(conn, data_dir)
        return box, False
    # A new database (or one whose init was interrupted before the key check was stored,
    # so nothing in it is encrypted yet): reuse a key file that is there, else create one.
    box = SecretBox(key if key is not None else write_key_file(key_path(data_dir)))
    migrate.run_migrations(conn)
    conn.execute(
        meta_table.insert(),
        [
            {"key": "schema_version", "value": str(COMPATIBLE_SCHEMA_VERSION)},
            {"key": "key_check", "value": box.key_check},
        ],
    )
    return box, True
