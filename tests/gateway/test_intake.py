"""Group commit: messages that arrive together share a transaction; each waits for its own."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from mailgate.db.migrate import upgrade
from mailgate.db.writer import Writer
from mailgate.gateway.intake import Intake
from mailgate.gateway.queue import Incoming, QueueStore


def incoming(i: int) -> Incoming:
    return Incoming("a@x.test", (f"r{i}@y.test",), f"Subject: {i}\r\n\r\nbody\r\n".encode())


async def test_concurrent_messages_share_commits(tmp_path: Path) -> None:
    queue = QueueStore(upgrade(create_engine(f"sqlite:///{tmp_path / 'q.db'}")))
    runner = Writer()
    stored: list[int] = []
    intake = Intake(queue, runner, on_stored=lambda: stored.append(1))
    intake.start()
    try:
        ids = await asyncio.gather(*(intake.store(incoming(i)) for i in range(50)))
    finally:
        await intake.stop()
        runner.close()
    assert sorted(ids) == list(range(1, 51))
    assert intake.commits < 50  # grouped
    assert len(stored) == intake.commits
    bodies = {queue.body(i) for i in ids}
    assert len(bodies) == 50


async def test_a_failed_commit_fails_every_message_of_it(tmp_path: Path) -> None:
    queue = QueueStore(upgrade(create_engine(f"sqlite:///{tmp_path / 'q.db'}")))

    async def broken_db(fn: Any, *args: Any) -> Any:
        raise OSError(28, "No space left on device")

    intake = Intake(queue, broken_db)
    intake.start()
    try:
        results = await asyncio.gather(
            *(intake.store(incoming(i)) for i in range(5)), return_exceptions=True
        )
    finally:
        await intake.stop()
    assert all(isinstance(r, OSError) for r in results)
    assert queue.messages() == []


async def test_lone_message_is_committed_at_once(tmp_path: Path) -> None:
    queue = QueueStore(upgrade(create_engine(f"sqlite:///{tmp_path / 'q.db'}")))
    runner = Writer()
    intake = Intake(queue, runner)
    intake.start()
    try:
        async with asyncio.timeout(5):
            message_id = await intake.store(incoming(1))
    finally:
        await intake.stop()
        runner.close()
    assert queue.get(message_id) is not None


@pytest.mark.parametrize("count", [64, 65, 200])
async def test_batches_are_capped(tmp_path: Path, count: int) -> None:
    queue = QueueStore(upgrade(create_engine(f"sqlite:///{tmp_path / 'q.db'}")))
    runner = Writer()
    intake = Intake(queue, runner)
    intake.start()
    try:
        await asyncio.gather(*(intake.store(incoming(i)) for i in range(count)))
    finally:
        await intake.stop()
        runner.close()
    assert intake.commits >= -(-count // 64)
    assert len(queue.messages(limit=1000)) == count


async def test_refusals_are_reported_once_the_store_works_again(tmp_path: Path) -> None:
    queue = QueueStore(upgrade(create_engine(f"sqlite:///{tmp_path / 'q.db'}")))
    runner = Writer()
    broken = [True]

    async def flaky_db(fn: Any, *args: Any) -> Any:
        if broken[0] and fn == queue.accept_many:
            raise OSError(28, "No space left on device")
        return await runner(fn, *args)

    intake = Intake(queue, flaky_db)
    intake.start()
    try:
        failed = await asyncio.gather(
            *(intake.store(incoming(i)) for i in range(3)), return_exceptions=True
        )
        assert all(isinstance(f, OSError) for f in failed)
        assert queue.events() == []  # nowhere to write it while the store fails
        broken[0] = False
        await intake.store(incoming(9))
    finally:
        await intake.stop()
        runner.close()
    [event] = queue.events()
    assert event.kind == "store_failed"
    assert "3 message(s) were refused with 451" in event.text
    assert "No space left on device" in event.text
