"""The schema's migrations: the decision, the baseline, PostgreSQL, upgrade and refusal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from mailgate.config.errors import ConfigError
from mailgate.config.store import Store
from mailgate.db import migrate
from mailgate.db.migrate import SchemaTooNewError, Step, plan
from mailgate.db.schema import metadata
from mailgate.gateway.devices import DeviceAccounts
from mailgate.gateway.queue import QueueStore, State
from tests.db import release

KNOWN = ("0001", "0002", "0003")


@pytest.mark.parametrize(
    ("has_tables", "revision", "step"),
    [
        (False, None, Step.CREATE),  # a new database
        (True, None, Step.UPGRADE),  # release 0.1.0: tables, no alembic_version
        (True, "0001", Step.UPGRADE),
        (True, "0002", Step.UPGRADE),
        (True, "0003", Step.CURRENT),
        (True, "0004", Step.TOO_NEW),  # written by a newer mailgate
        (False, "ffff", Step.TOO_NEW),
    ],
)
def test_plan(has_tables: bool, revision: str | None, step: Step) -> None:
    assert plan(has_tables, revision, KNOWN, "0003") is step


def _shape(url: str) -> dict[str, Any]:
    """Tables as an inspector sees them: columns, keys, indexes (names and columns)."""
    engine = create_engine(url)
    try:
        seen = inspect(engine)
        shape: dict[str, Any] = {}
        for table in sorted(set(seen.get_table_names()) - {"alembic_version", "counters"}):
            shape[table] = {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"]) for c in seen.get_columns(table)
                ],
                "pk": seen.get_pk_constraint(table)["constrained_columns"],
                "fks": [
                    (f["constrained_columns"], f["referred_table"], f["options"])
                    for f in seen.get_foreign_keys(table)
                ],
                "indexes": sorted(
                    (i["name"], tuple(i["column_names"])) for i in seen.get_indexes(table)
                ),
                "checks": [c["sqltext"] for c in seen.get_check_constraints(table)],
            }
        return shape
    finally:
        engine.dispose()


def test_baseline_is_the_release_schema(tmp_path: Path) -> None:
    db = release.restore(tmp_path / "old", shift=False)
    engine = create_engine(f"sqlite:///{tmp_path / 'new.db'}")
    with engine.begin() as conn:
        migrate.run_migrations(conn, "0001")
    engine.dispose()
    made = _shape(f"sqlite:///{tmp_path / 'new.db'}")
    assert set(made) == {
        "account", "device_accounts", "events", "meta", "queue_bodies",
        "queue_history", "queue_messages", "queue_recipients", "secrets", "settings",
    }  # fmt: skip
    assert made == _shape(f"sqlite:///{db}")


def test_schema_module_matches_the_migrations(tmp_path: Path) -> None:
    engine = migrate.upgrade(create_engine(f"sqlite:///{tmp_path / 'q.db'}"))
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        assert MigrationContext.configure(conn).get_current_revision() == migrate.head()
    engine.dispose()


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_migrations_render_for(dialect: str) -> None:
    sql = migrate.render_sql(dialect)
    assert "CREATE TABLE queue_messages" in sql
    assert "CREATE TABLE counters" in sql
    assert f"version_num='{migrate.head()}'" in sql  # stamped at the newest revision
    if dialect == "postgresql":
        assert "BYTEA" in sql  # LargeBinary as PostgreSQL spells it
        assert "SERIAL" in sql  # autoincrementing ids


def test_release_data_directory_upgrades_in_place(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    db = release.restore(data_dir)
    before = release.dump(db)
    with Store.open(data_dir) as store:
        queue = QueueStore(store.engine)
        held = queue.messages()
        assert {m.subject for m in held} == release.SUBJECTS
        assert {m.state for m in held} == {State.HELD}
        assert queue.accepted_total() == 3  # the counter starts at the rows there
        assert [a.username for a in DeviceAccounts(store.engine).list()] == ["scanner-3f"]
        assert store.settings().outbound.oauth is not None  # the provider is kept
        with store.engine.connect() as conn:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert revision == migrate.head()
    (backup,) = data_dir.glob("mailgate.db.backup-release-0.1.0-*")
    assert oct(backup.stat().st_mode & 0o777) == "0o600"
    assert release.dump(backup) == before  # the copy is the database before the upgrade
    with Store.open(data_dir):
        pass
    assert len(list(data_dir.glob("mailgate.db.backup-*"))) == 1  # current: no new copy


def test_a_new_data_directory_is_made_at_head_without_a_backup(tmp_path: Path) -> None:
    with Store.open(tmp_path / "data", create=True) as store:
        with store.engine.connect() as conn:
            found = migrate.inspect_database(conn)
        assert found.revision == migrate.head()
        assert QueueStore(store.engine).accepted_total() == 0
    assert list((tmp_path / "data").glob("*backup*")) == []


def test_a_newer_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    Store.open(data_dir, create=True).close()
    db = data_dir / "mailgate.db"
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9000'"))
    engine.dispose()
    before = release.dump(db)
    with pytest.raises(SchemaTooNewError) as raised:
        Store.open(data_dir)
    message = str(raised.value)
    assert "newer mailgate" in message
    assert "9000" in message
    assert "Install that newer mailgate again" in message
    assert isinstance(raised.value, ConfigError)  # the CLI shows it and exits 1
    assert release.dump(db) == before
    assert list(data_dir.glob("*backup*")) == []


def test_the_cli_says_what_to_do_with_a_newer_database(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from mailgate.cli import main

    data_dir = tmp_path / "data"
    Store.open(data_dir, create=True).close()
    engine = create_engine(f"sqlite:///{data_dir / 'mailgate.db'}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9000'"))
    engine.dispose()
    result = CliRunner().invoke(main, ["--data-dir", str(data_dir), "config", "show", "--json"])
    assert result.exit_code == 1, result.output
    assert "newer mailgate" in result.output
    with pytest.raises(json.JSONDecodeError):
        json.loads(result.output)
