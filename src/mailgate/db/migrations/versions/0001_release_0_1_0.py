"""The schema of release 0.1.0, the last one before migrations (commit 4094ae2).

Its data directories have no `alembic_version`; their `meta.schema_version` is 1, and the
queue and device tables exist only if `serve` or `device add` ever ran (those created
their tables on first use). So this revision creates whichever of its tables are missing
and leaves the others as they are: on such a directory it is a stamp, on an empty
database it is the whole schema. The definitions are frozen here on purpose (not taken
from mailgate.db.schema, which moves on).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.schema import SchemaItem

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


#: (index name, its columns), told apart from the columns in a table's list.
IndexSpec = tuple[str, tuple[str, ...]]


def _tables() -> list[tuple[str, list[SchemaItem | IndexSpec]]]:
    def queue_fk() -> sa.ForeignKey:
        return sa.ForeignKey("queue_messages.id", ondelete="CASCADE")

    return [
        (
            "meta",
            [
                sa.Column("key", sa.String(64), primary_key=True),
                sa.Column("value", sa.Text, nullable=False),
            ],
        ),
        (
            "settings",
            [
                sa.Column("key", sa.String(64), primary_key=True),
                sa.Column("value", sa.JSON, nullable=False),
            ],
        ),
        (
            "secrets",
            [
                sa.Column("name", sa.String(64), primary_key=True),
                sa.Column("ciphertext", sa.LargeBinary, nullable=False),
                sa.Column("updated_at", sa.Float, nullable=False),
            ],
        ),
        (
            "account",
            [
                sa.Column("id", sa.Integer, primary_key=True),
                sa.Column("upn", sa.Text, nullable=False),
                sa.Column("primary_address", sa.Text, nullable=False),
                sa.Column("signed_in_at", sa.Float, nullable=False),
                sa.Column("last_refresh_at", sa.Float, nullable=False),
                sa.Column("access_token_expires_at", sa.Float),
                sa.Column("last_error", sa.Text),
                sa.Column("last_error_at", sa.Float),
                sa.CheckConstraint("id = 1", name="one_account"),
            ],
        ),
        (
            "queue_messages",
            [
                sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("state", sa.String(16), nullable=False),
                sa.Column("envelope_from", sa.Text, nullable=False),
                sa.Column("received_at", sa.Float, nullable=False),
                sa.Column("size", sa.Integer, nullable=False),
                sa.Column("client", sa.Text, nullable=False),
                sa.Column("helo", sa.Text, nullable=False),
                sa.Column("auth_user", sa.Text),
                sa.Column("subject", sa.Text, nullable=False),
                sa.Column("attempts", sa.Integer, nullable=False),
                sa.Column("next_attempt_at", sa.Float, nullable=False),
                sa.Column("last_reply", sa.Text),
                sa.Column("held_reason", sa.Text),
                sa.Column("lease_owner", sa.Text),
                sa.Column("lease_until", sa.Float),
                sa.Column("finished_at", sa.Float),
                ("ix_queue_due", ("state", "next_attempt_at")),
            ],
        ),
        (
            "queue_bodies",
            [
                sa.Column("message_id", sa.Integer, queue_fk(), primary_key=True),
                sa.Column("data", sa.LargeBinary, nullable=False),
            ],
        ),
        (
            "queue_recipients",
            [
                sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("message_id", sa.Integer, queue_fk(), nullable=False),
                sa.Column("address", sa.Text, nullable=False),
                sa.Column("state", sa.String(16), nullable=False),
                sa.Column("reply", sa.Text),
                sa.Column("done_at", sa.Float),
                ("ix_queue_rcpt_msg", ("message_id",)),
                ("ix_queue_rcpt_done", ("state", "done_at")),
            ],
        ),
        (
            "queue_history",
            [
                sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("message_id", sa.Integer, queue_fk(), nullable=False),
                sa.Column("at", sa.Float, nullable=False),
                sa.Column("text", sa.Text, nullable=False),
                ("ix_queue_history_msg", ("message_id",)),
            ],
        ),
        (
            "events",
            [
                sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("at", sa.Float, nullable=False),
                sa.Column("level", sa.String(10), nullable=False),
                sa.Column("kind", sa.String(40), nullable=False),
                sa.Column("text", sa.Text, nullable=False),
                sa.Column("message_id", sa.Integer),
            ],
        ),
        (
            "device_accounts",
            [
                sa.Column("username", sa.String(200), primary_key=True),
                sa.Column("password_hash", sa.Text, nullable=False),
                sa.Column("created_at", sa.Float, nullable=False),
                sa.Column("note", sa.Text, nullable=False),
            ],
        ),
    ]


def upgrade() -> None:
    existing: set[str] = set()
    if not context.is_offline_mode():
        existing = set(sa.inspect(op.get_bind()).get_table_names())
    for name, items in _tables():
        if name in existing:
            continue
        op.create_table(name, *(i for i in items if not isinstance(i, tuple)))
        for index_name, columns in (i for i in items if isinstance(i, tuple)):
            op.create_index(index_name, name, list(columns))
