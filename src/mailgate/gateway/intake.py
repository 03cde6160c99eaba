"""Group commit for the listener: messages that arrive together share one fsync.

Theory of operation. Each SMTP session hands its message to :meth:`Intake.store` and
waits. One task takes whatever is waiting and commits it in a single transaction on the
database thread; while that commit (and its fsync) runs, new messages gather for the
next one. So under load each commit carries many messages, and a lone message is still
committed at once, with no timer. Every 250 is sent only after its own commit returned:
durability is the same as one transaction per message, the disk just works less.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from mailgate.gateway.queue import Incoming, QueueStore


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


#: Cap one transaction (memory: up to this many bodies at once).
MAX_BATCH = 64


class Intake:
    def __init__(
        self,
        queue: QueueStore,
        db: Callable[..., Awaitable[Any]],
        clock: Callable[[], float] = time.time,
        on_stored: Callable[[], None] | None = None,
    ) -> None:
        self.queue = queue
        self.db = db
        self.clock = clock
        self.on_stored = on_stored
        self._waiting: list[tuple[Incoming, asyncio.Future[int]]] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.commits = 0
        #: Messages refused with 451 since the store last worked: (count, first, last, why).
        #: The events table is in the store that failed, so the event waits for recovery.
        self._refused: tuple[int, float, float, str] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="intake-group-commit")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for _, future in self._waiting:  # the listener stopped first; nothing should wait
            if not future.done():
                future.set_exception(RuntimeError("mailgate is stopping"))
        self._waiting.clear()

    async def store(self, incoming: Incoming) -> int:
        """Returns the message id once the message is committed; raises if it was not."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append((incoming, future))
        self._arrived.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                await self._commit(batch)

    async def _commit(self, batch: Sequence[tuple[Incoming, asyncio.Future[int]]]) -> None:
        try:
            ids = await self.db(self.queue.accept_many, [m for m, _ in batch], self.clock())
        except Exception as error:  # nothing of the batch was stored: each client gets 451
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            self._note_refusal(len(batch), error)
            return
        self.commits += 1
        if self._refused is not None:
            await self._report_refusals()
        for (_, future), message_id in zip(batch, ids, strict=True):
            if not future.done():
                future.set_result(message_id)
        if self.on_stored is not None:
            self.on_stored()

    def _note_refusal(self, count: int, error: Exception) -> None:
        now = self.clock()
        why = str(error) or type(error).__name__
        if self._refused is None:
            self._refused = (count, now, now, why)
        else:
            total, first, _, _ = self._refused
            self._refused = (total + count, first, now, why)

    async def _report_refusals(self) -> None:
        assert self._refused is not None
        count, first, last, why = self._refused
        text = (
            f"The queue could not store mail: {count} message(s) were refused with 451 "
            f"between {_when(first)} and {_when(last)} ({why}). Devices retry by themselves; "
            "check free disk space and the data directory. Storing works again."
        )
        with contextlib.suppress(Exception):
            await self.db(self.queue.add_event, self.clock(), "error", "store_failed", text)
            self._refused = None
