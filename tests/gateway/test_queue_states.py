"""The queue's state machine as a table, and the store obeying it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, update

from mailgate.db.migrate import upgrade
from mailgate.db.schema import messages
from mailgate.gateway.queue import QueueStore
from mailgate.gateway.queue_schema import Incoming
from mailgate.gateway.queue_states import (
    TRANSITIONS,
    Move,
    State,
    after_submission,
    can,
    target,
)

#: Which move applies to which state (x); read across, it is the diagram of queue_states.
MATRIX = """
                   queued deferred held sending sent failed
claim              x      x        .    .       .    .
finish             .      .        .    x       .    .
defer              .      .        .    x       .    .
put back           .      .        .    x       .    .
hold for sign-in   .      .        .    x       .    .
recover            .      .        .    x       .    .
hold               x      x        .    .       .    .
release            .      .        x    .       .    .
retry              x      x        x    .       .    .
delete             x      x        x    .       x    x
"""


def _matrix() -> list[tuple[Move, State, bool]]:
    header, *rows = [line for line in MATRIX.splitlines() if line.strip()]
    states = [State(name) for name in header.split()]
    cases = []
    for row in rows:
        (*words,) = row.split()
        marks = words[-len(states) :]
        move = Move(" ".join(words[: -len(states)]))
        cases += [(move, state, mark == "x") for state, mark in zip(states, marks, strict=True)]
    return cases


def test_the_matrix_covers_every_move_and_state() -> None:
    assert len(_matrix()) == len(Move) * len(State)


@pytest.mark.parametrize(("move", "state", "allowed"), _matrix())
def test_can(move: Move, state: State, allowed: bool) -> None:
    assert can(move, state) is allowed


@pytest.mark.parametrize(
    ("move", "after"),
    [
        (Move.CLAIM, State.SENDING),
        (Move.DEFER, State.DEFERRED),
        (Move.PUT_BACK, State.QUEUED),
        (Move.HOLD_FOR_SIGN_IN, State.HELD),
        (Move.RECOVER, State.QUEUED),
        (Move.HOLD, State.HELD),
        (Move.RELEASE, State.QUEUED),
        (Move.RETRY, State.QUEUED),
    ],
)
def test_target(move: Move, after: State) -> None:
    assert target(move) is after


def test_finish_and_delete_have_no_single_target() -> None:
    assert TRANSITIONS[Move.FINISH].targets == {State.SENT, State.FAILED, State.QUEUED}
    assert TRANSITIONS[Move.DELETE].targets == frozenset()
    with pytest.raises(ValueError, match="unpack"):
        target(Move.FINISH)


@pytest.mark.parametrize(
    ("pending", "sent", "state"),
    [
        (1, 0, State.QUEUED),  # the rest go in the next transaction
        (2, 5, State.QUEUED),
        (0, 1, State.SENT),
        (0, 3, State.SENT),  # some failed too: they are bounced, the message is done
        (0, 0, State.FAILED),
    ],
)
def test_after_submission(pending: int, sent: int, state: State) -> None:
    assert after_submission(pending, sent) is state


# -- the store follows the table -----------------------------------------------------------
@pytest.fixture
def queue(tmp_path: Path) -> QueueStore:
    return QueueStore(upgrade(create_engine(f"sqlite:///{tmp_path / 'q.db'}")))


def _in_state(queue: QueueStore, state: State) -> int:
    message_id = queue.accept(Incoming("a@x.test", ("b@y.test",), b"Subject: s\r\n\r\nx\r\n"), 1.0)
    with queue.engine.begin() as conn:  # a test's shortcut to any state
        conn.execute(update(messages).where(messages.c.id == message_id).values(state=state))
    return message_id


_ADMIN: dict[Move, Callable[[QueueStore, int], int]] = {
    Move.HOLD: lambda q, i: q.hold(i, 2.0, "held by the administrator"),
    Move.RELEASE: lambda q, i: q.release(i, 2.0),
    Move.RETRY: lambda q, i: q.retry(i, 2.0),
    Move.DELETE: lambda q, i: int(q.delete(i)),
}


@pytest.mark.parametrize(("move", "state", "allowed"), [c for c in _matrix() if c[0] in _ADMIN])
def test_the_store_moves_only_what_the_table_allows(
    queue: QueueStore, move: Move, state: State, allowed: bool
) -> None:
    message_id = _in_state(queue, state)
    assert _ADMIN[move](queue, message_id) == (1 if allowed else 0)
    info = queue.get(message_id)
    if move is Move.DELETE:
        assert (info is None) is allowed
    else:
        assert info is not None
        assert info.state is (target(move) if allowed else state)


@pytest.mark.parametrize("state", list(State))
def test_only_waiting_messages_are_claimed(queue: QueueStore, state: State) -> None:
    _in_state(queue, state)
    claimed = queue.claim(10.0, "worker", 60.0)
    assert bool(claimed) is can(Move.CLAIM, state)
