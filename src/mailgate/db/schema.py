"""Every table of mailgate's database, in one MetaData.

Theory of operation: this module is the schema as the code uses it today; the migrations
in `mailgate/db/migrations/versions` are how a database gets there from any earlier
release (`mailgate.db.migrate`). Change a table here and add a migration in the same
commit: a test compares this MetaData with the result of running every migration.

Tables by owner: `meta`, `settings`, `secrets`, `account` (config/store.py);
`queue_*`, `events` and `counters` (gateway/queue.py); `device_accounts` (gateway/devices.py).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

#: What `meta.schema_version` says. Releases before migrations refuse a database whose
#: number is higher, so raise it only with a migration those releases cannot live with.
COMPATIBLE_SCHEMA_VERSION = 1

metadata = MetaData()

# -- settings, secrets, account ---------------------------------------------------------------
meta_table = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
settings_table = Table(
    "settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", JSON, nullable=False),
)
secrets_table = Table(
    "secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("updated_at", Float, nullable=False),
)
account_table = Table(
    "account",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("upn", Text, nullable=False),
    Column("primary_address", Text, nullable=False),
    Column("signed_in_at", Float, nullable=False),
    Column("last_refresh_at", Float, nullable=False),
    Column("access_token_expires_at", Float),
    Column("last_error", Text),
    Column("last_error_at", Float),
    CheckConstraint("id = 1", name="one_account"),  # one signed-in mailbox per gateway
)

# -- the queue (states: gateway/queue.py) -----------------------------------------------------
messages = Table(
    "queue_messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("state", String(16), nullable=False),
    Column("envelope_from", Text, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("size", Integer, nullable=False),
    Column("client", Text, nullable=False, default=""),
    Column("helo", Text, nullable=False, default=""),
    Column("auth_user", Text, nullable=True),
    Column("subject", Text, nullable=False, default=""),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("last_reply", Text, nullable=True),
    Column("held_reason", Text, nullable=True),
    Column("lease_owner", Text, nullable=True),
    Column("lease_until", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Index("ix_queue_due", "state", "next_attempt_at"),
)
# Bodies apart, so listing the queue never reads them.
bodies = Table(
    "queue_bodies",
    metadata,
    Column(
        "message_id", Integer, ForeignKey("queue_messages.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("data", LargeBinary, nullable=False),
)
# One row per recipient: a message can succeed for some and fail for others.
recipients = Table(
    "queue_recipients",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "message_id", Integer, ForeignKey("queue_messages.id", ondelete="CASCADE"), nullable=False
    ),
    Column("address", Text, nullable=False),
    Column("state", String(16), nullable=False, default="pending"),
    Column("reply", Text, nullable=True),
    Column("done_at", Float, nullable=True),
    Index("ix_queue_rcpt_msg", "message_id"),
    Index("ix_queue_rcpt_done", "state", "done_at"),
)
history = Table(
    "queue_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "message_id", Integer, ForeignKey("queue_messages.id", ondelete="CASCADE"), nullable=False
    ),
    Column("at", Float, nullable=False),
    Column("text", Text, nullable=False),
    Index("ix_queue_history_msg", "message_id"),
)
events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("level", String(10), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("text", Text, nullable=False),
    Column("message_id", Integer, nullable=True),
)

# Counters that only grow (Prometheus counters): not row counts, which purging lowers.
counters = Table(
    "counters",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)
#: Messages accepted since the database was made (with the queue row, in one commit).
ACCEPTED = "accepted"

# -- device accounts (AUTH to the gateway; gateway/devices.py) --------------------------------
device_accounts = Table(
    "device_accounts",
    metadata,
    Column("username", String(200), primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("note", Text, nullable=False, default=""),
)
