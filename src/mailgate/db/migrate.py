"""Bring a database to the schema of this code: create it, upgrade it, or refuse it.

Theory of operation: the revisions in `migrations/versions` (Alembic) run on SQLite and
PostgreSQL; SQLite alters go through batch mode. Which step a database needs is a pure
decision (:func:`plan`) on what it holds: no tables (create), no `alembic_version` but
tables (a data directory of release 0.1.0, before migrations: revision 0001 stamps it),
a known revision behind the newest (upgrade), the newest (nothing), or a revision this
code does not know (written by a newer mailgate: refuse, change nothing).

An upgrade takes SQLite's write lock (BEGIN IMMEDIATE), so two processes starting at once
upgrade once; before the first change it copies the database with SQLite's online backup
API to a file beside it, which is how an administrator goes back.
"""

from __future__ import annotations

import contextlib
import enum
import io
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from mailgate.config.errors import ConfigError
from mailgate.db.writer import backup_sqlite, write_transaction

MIGRATIONS = Path(__file__).parent / "migrations"


class SchemaTooNewError(ConfigError):
    """The database was written by a newer mailgate."""


class Step(enum.Enum):
    CREATE = "create"
    UPGRADE = "upgrade"
    CURRENT = "current"
    TOO_NEW = "too new"


def plan(has_tables: bool, revision: str | None, known: Collection[str], head: str) -> Step:
    """What a database needs: *revision* is its `alembic_version` (None: no such table)."""
    if revision is None:
        return Step.UPGRADE if has_tables else Step.CREATE
    if revision == head:
        return Step.CURRENT
    return Step.UPGRADE if revision in known else Step.TOO_NEW


@dataclass(frozen=True)
class Found:
    has_tables: bool
    revision: str | None


def _config(**attributes: object) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes.update(attributes)
    return config


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head() -> str:
    """The newest revision this code knows."""
    newest = _scripts().get_current_head()
    assert newest is not None  # revision 0001 ships with the package
    return newest


def known_revisions() -> set[str]:
    return {script.revision for script in _scripts().walk_revisions()}


def inspect_database(conn: Connection) -> Found:
    tables = set(inspect(conn).get_table_names())
    revision = None
    if "alembic_version" in tables:
        # Read directly: MigrationContext would log its set-up at every start.
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return Found(bool(tables - {"alembic_version"}), revision)


def step_for(conn: Connection) -> tuple[Step, Found]:
    found = inspect_database(conn)
    return plan(found.has_tables, found.revision, known_revisions(), head()), found


def run_migrations(conn: Connection, target: str = "head") -> None:
    """Every missing revision up to *target*, on *conn*, inside the caller's transaction."""
    command.upgrade(_config(connection=conn), target)


def render_sql(dialect: str) -> str:
    """The whole migration as SQL text for *dialect* (offline mode), without a database."""
    buffer = io.StringIO()
    config = _config(dialect=dialect)
    config.output_buffer = buffer
    with contextlib.redirect_stdout(buffer):
        command.upgrade(config, "head", sql=True)
    return buffer.getvalue()


def too_new(where: str, revision: str | None) -> SchemaTooNewError:
    return SchemaTooNewError(
        f"{where} was written by a newer mailgate (schema revision {revision}; this one "
        f"knows up to {head()}). Install that newer mailgate again to use it, or restore "
        "the copy made before its upgrade (the newest mailgate.db.backup-* file beside the "
        "database). Nothing was changed."
    )


def upgrade_in_place(engine: Engine, db_file: Path | None, where: str) -> Path | None:
    """Make the database current; the backup copy's path when it was upgraded (SQLite).

    A first read decides without locking (the usual case: nothing to do); an upgrade
    decides again under the write lock, in case another process did it meanwhile."""
    with engine.connect() as conn, conn.begin():
        step, found = step_for(conn)
    if step is Step.CURRENT:
        return None
    if step is Step.TOO_NEW:
        raise too_new(where, found.revision)
    with write_transaction(engine) as conn:
        step, found = step_for(conn)
        if step is Step.TOO_NEW:
            raise too_new(where, found.revision)
        if step is Step.CURRENT:
            return None
        copy = None
        if step is Step.UPGRADE and db_file is not None:
            copy = backup_sqlite(db_file, found.revision or "release-0.1.0", time.time())
        run_migrations(conn)
    return copy


def upgrade(engine: Engine) -> Engine:
    """Create or upgrade the schema of any database (tests, a new PostgreSQL database)."""
    with write_transaction(engine) as conn:
        run_migrations(conn)
    return engine
