"""Counters that only grow (Prometheus counters), kept apart from the rows they count.

`mailgate_messages_accepted` was the number of queue rows, so it went down when finished
messages were purged; a counter must never decrease (Prometheus' `rate()` reads a drop as
a restart). On an upgraded database the counter starts at the rows still there: mail
purged before the upgrade cannot be counted any more.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    counters = op.create_table(
        "counters",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.execute(
        counters.insert().from_select(
            ["name", "value"],
            sa.select(sa.literal("accepted"), sa.func.count()).select_from(
                sa.table("queue_messages")
            ),
        )
    )
