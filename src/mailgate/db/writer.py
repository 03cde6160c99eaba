"""The one writer: the only module that opens a write transaction on mailgate's database.

Theory of operation. SQLite allows one writer at a time. Several processes share the
database (`serve`, `login`, `config`, the console in `serve`), so every write is one
transaction that takes the write lock up front (BEGIN IMMEDIATE): a transaction that
reads and then writes could otherwise deadlock with another writer, and busy_timeout
cannot resolve that. Readers never wait (WAL mode). A commit is on disk when it returns
(synchronous=FULL): the listener replies 250 only after it.

Inside `serve`, one thread runs every database call of the event loop (:class:`Writer`):
an fsync never stalls the loop, and writes of the listener, the delivery engine and the
console queue up instead of contending for the lock. A test (tests/db/test_writer.py)
fails if another module opens a write transaction.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL

T = TypeVar("T")

#: How long a writer waits for another process's write lock before giving up.
BUSY_TIMEOUT_MS = 10_000
#: The connection option that makes SQLAlchemy's "begin" a BEGIN IMMEDIATE.
_WRITE = "mailgate_write"


def sqlite_engine(path: Path) -> Engine:
    """An engine on the SQLite file *path*: WAL, synchronous=FULL, busy_timeout, and
    BEGIN IMMEDIATE for the transactions :func:`write_transaction` opens."""
    engine = create_engine(URL.create("sqlite", database=str(path)))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would defer it).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction that writes: committed when the block ends, rolled back if it raises.

    On SQLite engines from :func:`sqlite_engine` it holds the write lock from its start;
    on others (PostgreSQL, a test's plain engine) it is an ordinary transaction."""
    with engine.connect() as conn:
        conn.execution_options(**{_WRITE: True})
        with conn.begin():
            yield conn


def check_writable(engine: Engine) -> None:
    """Raise unless the database can be written now: takes the write lock and lets go."""
    with write_transaction(engine):
        pass


@contextmanager
def sqlite_file(path: Path, uri_mode: str | None = None) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection in autocommit mode, for whole-file work outside the
    engine: online backups, checks of a backup file (uri_mode "ro": read only)."""
    target = f"file:{path}?mode={uri_mode}" if uri_mode else str(path)
    conn = sqlite3.connect(target, uri=uri_mode is not None, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        yield conn
    finally:
        conn.close()


def backup_sqlite(db_file: Path, label: str, clock: float) -> Path:
    """Copy *db_file* beside itself with SQLite's online backup (consistent while others
    read and write in WAL mode) as `<name>.backup-<label>-<UTC time>`; mode 0600, as the
    database."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock))
    target = db_file.with_name(f"{db_file.name}.backup-{label}-{stamp}")
    target.touch(mode=0o600, exist_ok=False)
    source = sqlite3.connect(db_file)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)
    finally:
        copy.close()
        source.close()
    return target


class Writer:
    """The thread that runs a process's database calls for its event loop, one at a time."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="mailgate-db")

    async def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
