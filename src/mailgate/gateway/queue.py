"""The durable queue: every accepted message, its recipients, its history, and admin events.

Theory of operation. The listener calls :meth:`QueueStore.accept` and replies 250 only
after that transaction has committed (SQLite in WAL mode with synchronous=FULL: the commit
is on disk). A message is then in one state, and moves between states as the table in
queue_states.py allows (each method below names its Move).

`claim` leases a message to one delivery worker (``lease_until``); a gateway killed in the
middle leaves leases that expire, and :meth:`recover` puts those messages back, so a
message that got a 250 is delivered at least once (twice only if the kill fell between
Exchange's 250 and our commit of "sent").

Recipients are rows of their own so a message can succeed for some and fail for others,
and so more than 500 recipients go in several submissions (Exchange's limit).
Bodies live in their own table so listing the queue never reads them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection

from mailgate.db.schema import ACCEPTED, bodies, counters, events, history, messages, recipients
from mailgate.db.writer import write_transaction
from mailgate.gateway.queue_schema import (
    ACTIVE_STATES,
    Claimed,
    Event,
    Incoming,
    MessageInfo,
    Recipient,
)
from mailgate.gateway.queue_states import Move, State, after_submission, can, sources, target
from mailgate.logsetup import log_event


class QueueStore:
    """All reads and writes of the queue. Methods are synchronous and short; the asyncio
    side calls them through one writer thread (SQLite allows one writer at a time)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- intake ---------------------------------------------------------------------------
    def accept(self, incoming: Incoming, now: float) -> int:
        """Store a message in one transaction; when this returns, it is on disk."""
        return self.accept_many([incoming], now)[0]

    def accept_many(self, batch: Sequence[Incoming], now: float) -> list[int]:
        """Store several messages in one transaction (group commit): one fsync for all.
        When this returns they are all on disk; if it raises, none is stored."""
        for incoming in batch:
            if not incoming.rcpt_tos:
                raise ValueError("a message needs at least one recipient")
        ids: list[int] = []
        with write_transaction(self.engine) as conn:
            for incoming in batch:
                ids.append(_insert(conn, incoming, now))
            # Counted in the same commit as the rows: the counter never misses or doubles one.
            conn.execute(
                update(counters)
                .where(counters.c.name == ACCEPTED)
                .values(value=counters.c.value + len(batch))
            )
        return ids

    def accepted_total(self) -> int:
        """Messages ever accepted (a counter: purging finished messages does not lower it)."""
        with self.engine.connect() as conn:
            value = conn.execute(
                select(counters.c.value).where(counters.c.name == ACCEPTED)
            ).scalar_one_or_none()
        return int(value or 0)

    # -- delivery -------------------------------------------------------------------------
    def next_due(self) -> float | None:
        """When the next queued or deferred message becomes due (None: nothing waiting)."""
        with self.engine.connect() as conn:
            value = conn.execute(
                select(func.min(messages.c.next_attempt_at)).where(
                    messages.c.state.in_(sources(Move.CLAIM))
                )
            ).scalar()
        return None if value is None else float(value)

    def claim(self, now: float, owner: str, lease: float, limit: int = 1) -> list[Claimed]:
        """Lease up to *limit* due messages to *owner* until now + *lease*."""
        with write_transaction(self.engine) as conn:
            due = (
                select(messages.c.id)
                .where(
                    messages.c.state.in_(sources(Move.CLAIM)),
                    messages.c.next_attempt_at <= now,
                )
                .order_by(messages.c.next_attempt_at, messages.c.id)
                .limit(limit)
            )
            # One UPDATE ... WHERE id IN (SELECT ...) is atomic, so two workers (or two
            # gateways on one database) never lease the same message.
            ids = (
                conn.execute(
                    update(messages)
                    .where(
                        messages.c.id.in_(due.scalar_subquery()),
                        messages.c.state.in_(sources(Move.CLAIM)),
                    )
                    .values(state=target(Move.CLAIM), lease_owner=owner, lease_until=now + lease)
                    .returning(messages.c.id)
                )
                .scalars()
                .all()
            )
            return [self._claimed(conn, int(i)) for i in sorted(ids)]

    def _claimed(self, conn: Connection, message_id: int) -> Claimed:
        row = conn.execute(select(messages).where(messages.c.id == message_id)).one()
        data = conn.execute(
            select(bodies.c.data).where(bodies.c.message_id == message_id)
        ).scalar_one()
        pending = (
            conn.execute(
                select(recipients.c.address)
                .where(recipients.c.message_id == message_id, recipients.c.state == "pending")
                .order_by(recipients.c.id)
            )
            .scalars()
            .all()
        )
        return Claimed(
            message_id,
            row.envelope_from,
            tuple(pending),
            bytes(data),
            row.attempts,
            row.received_at,
        )

    def recipients_done(
        self, message_id: int, done: Iterable[tuple[str, str, str]], now: float
    ) -> None:
        """Record final outcomes: (address, "sent" | "failed", reply) for each recipient."""
        with write_transaction(self.engine) as conn:
            _recipients_done(conn, message_id, done, now)

    def record(
        self,
        message_id: int,
        done: Iterable[tuple[str, str, str]],
        notes: Iterable[str],
        now: float,
    ) -> None:
        """Recipient outcomes and history notes of a delivery, in one transaction."""
        with write_transaction(self.engine) as conn:
            for text in notes:
                _note(conn, message_id, now, text)
            _recipients_done(conn, message_id, done, now)

    def complete(
        self,
        message_id: int,
        done: Iterable[tuple[str, str, str]],
        notes: Iterable[str],
        now: float,
        reply: str | None,
        note: str,
    ) -> State:
        """recipients_done, the notes and finish in one transaction: the usual end of a
        delivery costs one commit (one fsync) instead of three."""
        with write_transaction(self.engine) as conn:
            for text in notes:
                _note(conn, message_id, now, text)
            _recipients_done(conn, message_id, done, now)
            return _finish(conn, message_id, now, reply, note)

    def finish(self, message_id: int, now: float, reply: str | None, note: str) -> State:
        """After a submission: queued again while recipients are pending (due now), else
        sent when any recipient got it, else failed."""
        with write_transaction(self.engine) as conn:
            return _finish(conn, message_id, now, reply, note)

    def defer(
        self,
        message_id: int,
        now: float,
        next_at: float,
        reply: str | None,
        note: str,
        count_attempt: bool = True,
    ) -> None:
        """Back to waiting until *next_at*; pacing waits do not count as failed attempts."""
        with write_transaction(self.engine) as conn:
            conn.execute(
                update(messages)
                .where(messages.c.id == message_id)
                .values(
                    state=target(Move.DEFER),
                    attempts=messages.c.attempts + (1 if count_attempt else 0),
                    next_attempt_at=next_at,
                    last_reply=func.coalesce(reply, messages.c.last_reply),
                    lease_owner=None,
                    lease_until=None,
                )
            )
            _note(conn, message_id, now, note)

    def put_back(
        self, message_id: int, now: float, note: str, hold_reason: str | None = None
    ) -> None:
        """Return a leased message unchanged (shutdown), or hold it (sign-in needed)."""
        state = target(Move.HOLD_FOR_SIGN_IN if hold_reason else Move.PUT_BACK)
        with write_transaction(self.engine) as conn:
            conn.execute(
                update(messages)
                .where(messages.c.id == message_id)
                .values(
                    state=state.value, held_reason=hold_reason, lease_owner=None, lease_until=None
                )
            )
            _note(conn, message_id, now, note)

    def recover(self, now: float) -> int:
        """Messages whose lease ran out (their gateway died) become queued again."""
        expired = or_(messages.c.lease_until.is_(None), messages.c.lease_until <= now)
        return self._requeue(and_(messages.c.state.in_(sources(Move.RECOVER)), expired), now)

    def release_owner(self, owner: str, now: float) -> int:
        """At start-up: leases held by this gateway's previous life are void at once."""
        mine = messages.c.lease_owner == owner
        return self._requeue(and_(messages.c.state.in_(sources(Move.RECOVER)), mine), now)

    def resume_restored(self, now: float) -> int:
        """After a restore from a backup: leases of the gateway the backup came from are
        void, and deferred mail is due now (its backoff was for that machine's trouble).
        Held mail stays held. Returns how many messages changed."""
        requeued = self._requeue(messages.c.state.in_(sources(Move.RECOVER)), now)
        values = {"next_attempt_at": now}
        deferred = messages.c.state == State.DEFERRED.value
        return requeued + self._transition(deferred, now, values, "restored from a backup")

    def _requeue(self, where: ColumnElement[bool], now: float) -> int:
        values = {
            "state": target(Move.RECOVER),
            "lease_owner": None,
            "lease_until": None,
            "next_attempt_at": now,
        }
        return self._transition(where, now, values, "delivery was interrupted; queued again")

    # -- administration -------------------------------------------------------------------
    def hold(self, message_id: int | None, now: float, reason: str) -> int:
        """Hold one message, or (None) every queued and deferred one."""
        where: ColumnElement[bool] = messages.c.state.in_(sources(Move.HOLD))
        if message_id is not None:
            where = and_(where, messages.c.id == message_id)
        return self._transition(
            where, now, {"state": target(Move.HOLD), "held_reason": reason}, f"held: {reason}"
        )

    def release(
        self, message_id: int | None, now: float, note: str = "released", reason: str | None = None
    ) -> int:
        """Release one held message, or (None) all held ones, or only those held for *reason*."""
        where: ColumnElement[bool] = messages.c.state.in_(sources(Move.RELEASE))
        if message_id is not None:
            where = and_(where, messages.c.id == message_id)
        if reason is not None:
            where = and_(where, messages.c.held_reason == reason)
        values = {"state": target(Move.RELEASE), "held_reason": None, "next_attempt_at": now}
        return self._transition(where, now, values, note)

    def rehold(self, old_reason: str, new_reason: str, now: float) -> int:
        """Give every message held for *old_reason* the reason *new_reason* (still held)."""
        where = and_(messages.c.state == State.HELD.value, messages.c.held_reason == old_reason)
        return self._transition(where, now, {"held_reason": new_reason}, f"held: {new_reason}")

    def retry(self, message_id: int | None, now: float) -> int:
        """Make deferred (or held) messages due now."""
        where: ColumnElement[bool] = messages.c.state.in_(sources(Move.RETRY))
        if message_id is not None:
            where = and_(where, messages.c.id == message_id)
        values = {"state": target(Move.RETRY), "held_reason": None, "next_attempt_at": now}
        return self._transition(where, now, values, "retry requested")

    def delete(self, message_id: int) -> bool:
        with write_transaction(self.engine) as conn:
            found = conn.execute(
                select(messages.c.state).where(messages.c.id == message_id)
            ).scalar()
            if found is None or not can(Move.DELETE, State(found)):
                return False
            conn.execute(delete(history).where(history.c.message_id == message_id))
            conn.execute(delete(recipients).where(recipients.c.message_id == message_id))
            conn.execute(delete(bodies).where(bodies.c.message_id == message_id))
            conn.execute(delete(messages).where(messages.c.id == message_id))
            return True

    def _transition(
        self, where: ColumnElement[bool], now: float, values: dict[str, Any], note: str
    ) -> int:
        with write_transaction(self.engine) as conn:
            ids = (
                conn.execute(
                    update(messages).where(where).values(**values).returning(messages.c.id)
                )
                .scalars()
                .all()
            )
            for message_id in ids:
                _note(conn, message_id, now, note)
            return len(ids)

    # -- reading --------------------------------------------------------------------------
    def get(self, message_id: int) -> MessageInfo | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(messages).where(messages.c.id == message_id)).one_or_none()
            return None if row is None else self._info(conn, row)

    def messages(
        self, states: Sequence[State] | None = None, limit: int = 100, offset: int = 0
    ) -> list[MessageInfo]:
        query = select(messages).order_by(messages.c.id.desc()).limit(limit).offset(offset)
        if states:
            query = query.where(messages.c.state.in_([s.value for s in states]))
        with self.engine.connect() as conn:
            return [self._info(conn, row) for row in conn.execute(query).all()]

    def body(self, message_id: int) -> bytes | None:
        with self.engine.connect() as conn:
            data = conn.execute(
                select(bodies.c.data).where(bodies.c.message_id == message_id)
            ).scalar()
        return None if data is None else bytes(data)

    def history(self, message_id: int) -> list[tuple[float, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(history.c.at, history.c.text)
                .where(history.c.message_id == message_id)
                .order_by(history.c.id)
            ).all()
        return [(float(at), str(text)) for at, text in rows]

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(messages.c.state, func.count()).group_by(messages.c.state)
            ).all()
        result = {s.value: 0 for s in State}
        result.update({str(state): int(n) for state, n in rows})
        return result

    def oldest_active(self) -> float | None:
        """Arrival time of the oldest message not yet sent or failed."""
        with self.engine.connect() as conn:
            value = conn.execute(
                select(func.min(messages.c.received_at)).where(
                    messages.c.state.in_([s.value for s in ACTIVE_STATES])
                )
            ).scalar()
        return None if value is None else float(value)

    def recipient_counts(self) -> list[tuple[str, int]]:
        """Recipients by state (pending, sent, failed): the metrics' counter."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(recipients.c.state, func.count()).group_by(recipients.c.state)
            ).all()
        return [(str(state), int(count)) for state, count in rows]

    def event_counts(self) -> list[tuple[str, str, int]]:
        """Events by kind and level (delivery records each refusal and deferral as one)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(events.c.kind, events.c.level, func.count()).group_by(
                    events.c.kind, events.c.level
                )
            ).all()
        return [(str(kind), str(level), int(count)) for kind, level, count in rows]

    def recipients_sent_since(self, since: float) -> list[tuple[float, int]]:
        """(time, recipients) of submissions since *since*, to rebuild the 24 h pacing window."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(recipients.c.done_at, func.count())
                .where(recipients.c.state == "sent", recipients.c.done_at >= since)
                .group_by(recipients.c.done_at)
                .order_by(recipients.c.done_at)
            ).all()
        return [(float(at), int(n)) for at, n in rows]

    def _info(self, conn: Connection, row: Any) -> MessageInfo:
        rcpts = conn.execute(
            select(recipients.c.address, recipients.c.state, recipients.c.reply)
            .where(recipients.c.message_id == row.id)
            .order_by(recipients.c.id)
        ).all()
        return MessageInfo(
            id=row.id,
            state=State(row.state),
            envelope_from=row.envelope_from,
            received_at=row.received_at,
            size=row.size,
            client=row.client,
            subject=row.subject,
            attempts=row.attempts,
            next_attempt_at=row.next_attempt_at,
            last_reply=row.last_reply,
            held_reason=row.held_reason,
            recipients=tuple(Recipient(a, s, r) for a, s, r in rcpts),
        )

    # -- events ---------------------------------------------------------------------------
    def add_event(
        self, now: float, level: str, kind: str, text: str, message_id: int | None = None
    ) -> None:
        """Record an event for the console, and log it: every event is also a log line."""
        log_event(level, kind, text, message_id)
        with write_transaction(self.engine) as conn:
            conn.execute(
                insert(events).values(
                    at=now, level=level, kind=kind, text=text, message_id=message_id
                )
            )

    def events(self, limit: int = 100) -> list[Event]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(events).order_by(events.c.id.desc()).limit(limit)).all()
        return [Event(r.id, r.at, r.level, r.kind, r.text, r.message_id) for r in rows]

    def note(self, message_id: int, now: float, text: str) -> None:
        with write_transaction(self.engine) as conn:
            _note(conn, message_id, now, text)


def _finish(conn: Connection, message_id: int, now: float, reply: str | None, note: str) -> State:
    counts: dict[str, int] = dict(
        conn.execute(
            select(recipients.c.state, func.count())
            .where(recipients.c.message_id == message_id)
            .group_by(recipients.c.state)
        ).all()
    )
    state = after_submission(counts.get("pending", 0), counts.get("sent", 0))
    finished = None if state is State.QUEUED else now
    conn.execute(
        update(messages)
        .where(messages.c.id == message_id)
        .values(
            state=state.value,
            last_reply=reply,
            finished_at=finished,
            next_attempt_at=now,
            lease_owner=None,
            lease_until=None,
            held_reason=None,
        )
    )
    _note(conn, message_id, now, note)
    return state


def _recipients_done(
    conn: Connection, message_id: int, done: Iterable[tuple[str, str, str]], now: float
) -> None:
    for address, outcome, reply in done:
        conn.execute(
            update(recipients)
            .where(
                recipients.c.message_id == message_id,
                recipients.c.address == address,
                recipients.c.state == "pending",
            )
            .values(state=outcome, reply=reply, done_at=now)
        )


def _insert(conn: Connection, incoming: Incoming, now: float) -> int:
    message_id = conn.execute(
        insert(messages)
        .values(
            state=State.QUEUED.value,
            envelope_from=incoming.envelope_from,
            received_at=now,
            size=len(incoming.data),
            client=incoming.client,
            helo=incoming.helo,
            auth_user=incoming.auth_user,
            subject=incoming.subject[:500],
            attempts=0,
            next_attempt_at=now,
        )
        .returning(messages.c.id)
    ).scalar_one()
    conn.execute(insert(bodies).values(message_id=message_id, data=incoming.data))
    conn.execute(
        insert(recipients),
        [{"message_id": message_id, "address": r, "state": "pending"} for r in incoming.rcpt_tos],
    )
    count = len(incoming.rcpt_tos)
    note = f"accepted from {incoming.client or 'unknown'} for {count} recipient(s)"
    _note(conn, message_id, now, note)
    return int(message_id)


def _note(conn: Connection, message_id: int, now: float, text: str) -> None:
    conn.execute(insert(history).values(message_id=message_id, at=now, text=text))


def dumps(infos: Iterable[MessageInfo]) -> str:
    return json.dumps([i.to_json() for i in infos], indent=2)


# The records live in queue_schema; callers import them from here with the store.
__all__ = [
    "ACTIVE_STATES",
    "Claimed",
    "Event",
    "Incoming",
    "MessageInfo",
    "QueueStore",
    "Recipient",
    "State",
    "dumps",
]
