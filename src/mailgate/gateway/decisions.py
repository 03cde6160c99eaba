"""What the delivery engine does after each upstream reply: a pure function, table-tested.

The classification of a reply (submission.replies) says what happened; this module says
what becomes of the message: sent, retried when, held for a sign-in, or failed and
bounced. Keeping it apart from the I/O makes every branch a row in a table of tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mailgate.gateway.retry import next_attempt_at
from mailgate.submission.replies import Action, Classification

#: After 432 4.3.2 (too many connections), send over one connection for this long.
THROTTLE_COOLDOWN = 10 * 60.0
#: After 554 5.2.0 (24-hour quota), look again after this long.
QUOTA_RECHECK = 60 * 60.0


class Fate(StrEnum):
    DEFER = "defer"
    HOLD = "hold"
    FAIL = "fail"
    RETRY_NOW = "retry-now"


@dataclass(frozen=True)
class Decision:
    fate: Fate
    #: When to try again (DEFER), or None.
    next_at: float | None = None
    #: Every queued message waits for a new sign-in (authentication faults are not per message).
    hold_all: bool = False
    #: Until when to use a single upstream connection.
    single_connection_until: float | None = None
    #: Close the upstream connection (its state is unknown or the server dislikes it).
    drop_connection: bool = False
    #: Whether this counts as a failed attempt for the backoff schedule.
    counts_as_attempt: bool = True


def decide(
    classification: Classification,
    failures_before: int,
    now: float,
    first_queued_at: float,
    max_lifetime: float,
    draw: float = 0.5,
) -> Decision:
    """The fate of a message whose submission met *classification*."""
    action = classification.action
    if action is Action.HOLD_UNTIL_SIGN_IN:
        return Decision(Fate.HOLD, hold_all=True, drop_connection=True, counts_as_attempt=False)
    if action is Action.FAIL:
        return Decision(Fate.FAIL)
    if action is Action.SPLIT_RECIPIENTS:
        # The rest of the recipients go in the next transaction, right away.
        return Decision(Fate.RETRY_NOW, counts_as_attempt=False)
    if action is Action.DEFER_UNTIL_QUOTA_WINDOW:
        deadline = first_queued_at + max_lifetime
        if now >= deadline:
            return Decision(Fate.FAIL)
        return Decision(Fate.DEFER, next_at=min(now + QUOTA_RECHECK, deadline))
    at = next_attempt_at(failures_before + 1, now, first_queued_at, max_lifetime, draw)
    if at is None:
        # Out of time: the message fails, and the connection is as unusable as on any retry.
        return Decision(Fate.FAIL, drop_connection=True)
    if action is Action.FEWER_CONNECTIONS:
        return Decision(
            Fate.DEFER,
            next_at=at,
            single_connection_until=now + THROTTLE_COOLDOWN,
            drop_connection=True,
        )
    # RETRY: 4xx replies and network faults. A network fault leaves the connection unusable.
    return Decision(Fate.DEFER, next_at=at, drop_connection=True)
