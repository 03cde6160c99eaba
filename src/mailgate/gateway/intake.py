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
            return
        self.commits += 1
        for (_, future), message_id in zip(batch, ids, strict=True):
            if not future.done():
                future.set_result(message_id)
        if self.on_stored is not None:
            self.on_stored()
