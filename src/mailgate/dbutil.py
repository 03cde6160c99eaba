"""Small database helpers shared by the stores."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.engine import Connection


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write. On SQLite the settings store's engine turns this
    into BEGIN IMMEDIATE: taking the write lock up front avoids the deadlock of two
    processes that both read and then try to write (busy_timeout cannot resolve it)."""
    with engine.connect() as conn:
        conn.execution_options(mailgate_write=True)
        with conn.begin():
            yield conn
