"""The queue's tables and the records it hands out; the QueueStore in queue.py uses them.

Kept apart so the schema reads in one screen: messages (one row each, with the state
machine of queue.py's docstring), their bodies, recipients, history, and admin events.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import (
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


class State(StrEnum):
    QUEUED = "queued"
    DEFERRED = "deferred"
    HELD = "held"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


ACTIVE_STATES = (State.QUEUED, State.DEFERRED, State.HELD, State.SENDING)

metadata = MetaData()

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

bodies = Table(
    "queue_bodies",
    metadata,
    Column(
        "message_id", Integer, ForeignKey("queue_messages.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("data", LargeBinary, nullable=False),
)

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


@dataclass(frozen=True)
class Recipient:
    address: str
    state: str
    reply: str | None


@dataclass(frozen=True)
class MessageInfo:
    id: int
    state: State
    envelope_from: str
    received_at: float
    size: int
    client: str
    subject: str
    attempts: int
    next_attempt_at: float
    last_reply: str | None
    held_reason: str | None
    recipients: tuple[Recipient, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state.value,
            "envelope_from": self.envelope_from,
            "received_at": self.received_at,
            "size": self.size,
            "client": self.client,
            "subject": self.subject,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at,
            "last_reply": self.last_reply,
            "held_reason": self.held_reason,
            "recipients": [vars(r) for r in self.recipients],
        }


@dataclass(frozen=True)
class Incoming:
    """A message as the listener received it."""

    envelope_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    client: str = ""
    helo: str = ""
    auth_user: str | None = None
    subject: str = ""


@dataclass(frozen=True)
class Claimed:
    """A message leased to a delivery worker: what it needs to submit it."""

    id: int
    envelope_from: str
    pending: tuple[str, ...]
    data: bytes
    attempts: int
    received_at: float


@dataclass(frozen=True)
class Event:
    id: int
    at: float
    level: str
    kind: str
    text: str
    message_id: int | None
