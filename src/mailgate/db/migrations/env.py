"""Alembic's entry point: runs the migrations on the connection `mailgate.db.migrate` gives.

Online, the caller owns the connection and its transaction (so mailgate's write lock and
the backup before an upgrade stay in one place). Offline (`as_sql`), the SQL is rendered
for the dialect the caller names: how the tests check that PostgreSQL accepts it.
"""

from __future__ import annotations

from alembic import context

from mailgate.db.schema import metadata

config = context.config

if context.is_offline_mode():
    context.configure(
        dialect_name=config.attributes["dialect"],
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    context.configure(
        connection=config.attributes["connection"],
        target_metadata=metadata,
        # SQLite cannot ALTER most things: batch mode copies the table instead.
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()
