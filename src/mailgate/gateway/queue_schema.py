"""The records the queue hands out; the QueueStore in queue.py makes them.

The states and their moves are in queue_states.py; the tables in mailgate.db.schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailgate.gateway.queue_states import ACTIVE_STATES, State

__all__ = [
    "ACTIVE_STATES",
    "Claimed",
    "Event",
    "Incoming",
    "MessageInfo",
    "Recipient",
    "State",
]


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
