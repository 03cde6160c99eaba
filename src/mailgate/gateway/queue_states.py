"""The queue's states and the moves between them, as one table.

Theory of operation: a message is in exactly one :class:`State`; every change of state is
a :class:`Move`, allowed only from the states the table lists. The store (queue.py)
builds its SQL from this table, so "which messages may be held" or "what a worker may
claim" is written once, here, and tested as a table:

    queued ──claim──> sending ──finish──> sent | failed | queued (recipients left)
      ^  ^               │ ├──defer──> deferred ──(due)──claim──> sending
      │  │               │ ├──hold for sign-in──> held ──release / retry──> queued
      │  └──put back─────┤ └──recover (lease ran out, gateway restarted)──> queued
      └──hold / release / retry (administrator) between queued, deferred, held

Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    QUEUED = "queued"
    DEFERRED = "deferred"
    HELD = "held"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


#: Not finished: counted as the queue's depth, and the oldest of them as its age.
ACTIVE_STATES = (State.QUEUED, State.DEFERRED, State.HELD, State.SENDING)


class Move(StrEnum):
    #: A delivery worker leases a due message.
    CLAIM = "claim"
    #: After a submission: sent (to any recipient), failed (to none), or queued again while
    #: recipients are left for another transaction (more than Exchange's 500 per message).
    FINISH = "finish"
    #: A temporary failure or a pacing wait: try again at a later time.
    DEFER = "defer"
    #: Shutdown: the leased message goes back unchanged.
    PUT_BACK = "put back"
    #: The sign-in is dead: the leased message waits with the rest (see HOLD).
    HOLD_FOR_SIGN_IN = "hold for sign-in"
    #: A lease ran out (its gateway died) or belonged to this gateway's previous life.
    RECOVER = "recover"
    #: The administrator (or a dead sign-in) keeps waiting mail from being delivered.
    HOLD = "hold"
    RELEASE = "release"
    #: Due now, whatever it waited for.
    RETRY = "retry"
    #: Removed with its body, recipients and history; never while a worker sends it.
    DELETE = "delete"


@dataclass(frozen=True)
class Transition:
    sources: frozenset[State]
    #: What the message can become (empty: it is gone).
    targets: frozenset[State]


def _t(sources: set[State], *targets: State) -> Transition:
    return Transition(frozenset(sources), frozenset(targets))


_WAITING = {State.QUEUED, State.DEFERRED}
TRANSITIONS: dict[Move, Transition] = {
    Move.CLAIM: _t(_WAITING, State.SENDING),
    Move.FINISH: _t({State.SENDING}, State.SENT, State.FAILED, State.QUEUED),
    Move.DEFER: _t({State.SENDING}, State.DEFERRED),
    Move.PUT_BACK: _t({State.SENDING}, State.QUEUED),
    Move.HOLD_FOR_SIGN_IN: _t({State.SENDING}, State.HELD),
    Move.RECOVER: _t({State.SENDING}, State.QUEUED),
    Move.HOLD: _t(_WAITING, State.HELD),
    Move.RELEASE: _t({State.HELD}, State.QUEUED),
    Move.RETRY: _t({*_WAITING, State.HELD}, State.QUEUED),
    Move.DELETE: _t(set(State) - {State.SENDING}),
}


def can(move: Move, state: State) -> bool:
    return state in TRANSITIONS[move].sources


def sources(move: Move) -> list[str]:
    """The states *move* applies to, as stored (for a WHERE state IN (...))."""
    return sorted(s.value for s in TRANSITIONS[move].sources)


def target(move: Move) -> State:
    """The one state *move* leads to."""
    (only,) = TRANSITIONS[move].targets
    return only


def after_submission(pending: int, sent: int) -> State:
    """FINISH: queued while recipients are pending, else sent when any recipient got it
    (the failed ones are bounced), else failed."""
    if pending:
        return State.QUEUED
    return State.SENT if sent else State.FAILED
