"""The durable queue: state transitions, leases, recovery after a crash, counts."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine

from mailgate.db.migrate import upgrade
from mailgate.gateway.queue import QueueStore, State
from mailgate.gateway.queue_schema import Incoming

DATA = b"From: a@x.test\r\nSubject: hi\r\n\r\nbody\r\n"


@pytest.fixture
def queue(tmp_path: Path) -> QueueStore:
    return QueueStore(upgrade(create_engine(f"sqlite:///{tmp_path / 'q.db'}")))


def test_accept_then_claim_then_sent(queue: QueueStore) -> None:
    mid = queue.accept(
        Incoming("a@x.test", ("r1@y.test", "r2@y.test"), DATA, client="10.0.0.5"), 100.0
    )
    assert queue.counts()["queued"] == 1
    assert queue.oldest_active() == 100.0
    claimed = queue.claim(now=100.0, owner="w1", lease=60, limit=5)
    assert [c.id for c in claimed] == [mid]
    assert claimed[0].data == DATA
    assert claimed[0].pending == ("r1@y.test", "r2@y.test")
    # A second worker gets nothing: the message is leased.
    assert queue.claim(now=100.0, owner="w2", lease=60, limit=5) == []
    queue.recipients_done(
        mid, [("r1@y.test", "sent", "250 OK"), ("r2@y.test", "sent", "250 OK")], 101.0
    )
    assert queue.finish(mid, 101.0, "250 2.0.0 OK", "sent") is State.SENT
    info = queue.get(mid)
    assert info is not None
    assert info.state is State.SENT
    assert queue.oldest_active() is None
    assert [t for _, t in queue.history(mid)][-1] == "sent"


def test_partial_recipients_keep_message_queued(queue: QueueStore) -> None:
    mid = queue.accept(Incoming("a@x.test", tuple(f"r{i}@y.test" for i in range(3)), DATA), 0.0)
    queue.claim(0.0, "w", 60)
    queue.recipients_done(mid, [("r0@y.test", "sent", "250")], 1.0)
    assert queue.finish(mid, 1.0, "250", "first part sent") is State.QUEUED
    again = queue.claim(1.0, "w", 60)
    assert again[0].pending == ("r1@y.test", "r2@y.test")
    queue.recipients_done(mid, [("r1@y.test", "sent", "250"), ("r2@y.test", "failed", "550")], 2.0)
    assert queue.finish(mid, 2.0, "550", "done") is State.SENT


def test_all_recipients_failed_is_failed(queue: QueueStore) -> None:
    mid = queue.accept(Incoming("a@x.test", ("r@y.test",), DATA), 0.0)
    queue.claim(0.0, "w", 60)
    queue.recipients_done(mid, [("r@y.test", "failed", "554 5.2.252")], 1.0)
    assert queue.finish(mid, 1.0, "554 5.2.252", "failed") is State.FAILED


def test_release_by_reason_leaves_manual_holds(queue: QueueStore) -> None:
    a = queue.accept(Incoming("a@x.test", ("r@y.test",), DATA), 0.0)
    b = queue.accept(Incoming("a@x.test", ("r@y.test",), DATA), 0.0)
    queue.hold(a, 1.0, "held by the administrator")
    queue.hold(b, 1.0, "sign-in needed")
    assert queue.release(None, 2.0, reason="sign-in needed") == 1
    info = queue.get(a)
    assert info is not None
    assert info.state is State.HELD


def test_defer_waits_until_next_attempt(queue: QueueStore) -> None:
    mid = queue.accept(Incoming("a@x.test", ("r@y.test",), DATA), 0.0)
    queue.claim(0.0, "w", 60)
    queue.defer(mid, 0.0, next_at=60.0, reply="451 4.7.0 try later", note="deferred")
    assert queue.claim(59.0, "w", 60) == []
    assert queue.next_due() == 60.0
    claimed = queue.claim(60.0, "w", 60)
    assert claimed[0].attempts == 1


def test_crash_recovery_requeues_expired_leases(queue: QueueStore) -> None:
    mid = queue.accept(Incoming("a@x.test", ("r@y.test",), DATA), 0.0)
    queue.claim(0.0, "dead-gateway", 30)
    assert queue.recover(now=10.0) == 0
    assert queue.recover(now=31.0) == 1
    assert queue.claim(31.0, "w", 30)[0].id == mid


def test_release_owner_at_startup(queue: QueueStore) -> None:
    queue.accept(Incoming("a@x.test", ("r@y.test",), DATA), 0.0)
    queue.claim(0.0, "gw-1", 300)
    assert queue.release_owner("gw-1", 1.0) == 1
    assert queue.counts()["queued"] == 1


def test_hold_release_retry_delete(queue: QueueStore) -> None:
    a = queue.accept(Incoming("a@x.test", ("r@y.test",), DATA), 0.0)
    b = queue.accept(Incoming("a@x.test", ("r@y.test",), DATA), 0.0)
    assert queue.hold(None, 1.0, "sign-in needed") == 2
    assert queue.claim(5.0, "w", 60) == []
    assert queue.release(a, 2.0) == 1
    assert queue.retry(b, 3.0) == 1
    assert {c.id for c in queue.claim(5.0, "w", 60, limit=5)} == {a, b}
    assert not queue.delete(a)  # being sent: refuse
    queue.put_back(a, 6.0, "shutdown")
    assert queue.delete(a)
    assert queue.get(a) is None
    assert queue.body(a) is None


def test_put_back_with_hold_reason(queue: QueueStore) -> None:
    mid = queue.accept(Incoming("a@x.test", ("r@y.test",), DATA), 0.0)
    queue.claim(0.0, "w", 60)
    queue.put_back(mid, 1.0, "token refused", hold_reason="sign-in needed")
    info = queue.get(mid)
    assert info is not None
    assert info.state is State.HELD
    assert info.held_reason == "sign-in needed"


def test_recipients_sent_since_for_pacing(queue: QueueStore) -> None:
    mid = queue.accept(Incoming("a@x.test", ("r1@y.test", "r2@y.test"), DATA), 0.0)
    queue.claim(0.0, "w", 60)
    queue.recipients_done(mid, [("r1@y.test", "sent", "250"), ("r2@y.test", "sent", "250")], 50.0)
    assert queue.recipients_sent_since(0.0) == [(50.0, 2)]
    assert queue.recipients_sent_since(51.0) == []


def test_events(queue: QueueStore) -> None:
    queue.add_event(1.0, "warning", "sign_in_needed", "Sign in again")
    queue.add_event(2.0, "info", "resumed", "Delivery resumed")
    assert [e.kind for e in queue.events()] == ["resumed", "sign_in_needed"]


def test_accept_without_recipients_is_refused(queue: QueueStore) -> None:
    with pytest.raises(ValueError, match="recipient"):
        queue.accept(Incoming("a@x.test", (), DATA), 0.0)


def test_accepted_is_a_counter_that_deleting_does_not_lower(queue: QueueStore) -> None:
    from mailgate.console.metrics import QueueCollector

    first = queue.accept(Incoming("a@x.test", ("b@y.test",), b"Subject: 1\r\n\r\nx\r\n"), 1.0)
    queue.accept(Incoming("a@x.test", ("b@y.test",), b"Subject: 2\r\n\r\nx\r\n"), 2.0)
    assert queue.delete(first)
    assert queue.accepted_total() == 2
    collector = QueueCollector(queue, store=None)  # type: ignore[arg-type]  # queue figures only
    (family,) = [m for m in collector.queue_metrics() if m.name == "mailgate_messages_accepted"]
    assert [s.value for s in family.samples if s.name.endswith("_total")] == [2.0]
