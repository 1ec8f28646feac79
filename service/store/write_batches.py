"""Coalesced writes: records made while the previous write of their kind is
in flight go to the database together, in one transaction, and each caller
is answered only once its own record is committed (or failed).

At a low rate every record is a write of its own, at once; under load the
records of many sends share one commit and one round trip, which is what
the dispatcher spent most of its time on (a transaction of four statements
per outcome and per delivery report).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# A write returns, for each record in order, its result or the exception
# that record alone failed with.
Write = Callable[[list[T]], Awaitable[list[R | BaseException]]]


class WriteBatch(Generic[T, R]):
    """One writer at a time; what comes meanwhile waits for the next write."""

    def __init__(self, write: Write[T, R], limit: int = 100) -> None:
        self._write = write
        self._limit = limit
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.writes = 0  # how many writes were made (for tests and metrics)

    async def add(self, item: T) -> R:
        """Write `item` with whatever else is waiting; its own result once committed."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests): the old one's work is gone
            self._loop, self._task, self._pending = loop, None, []
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if self._task is None:
            self._task = asyncio.create_task(self._drain())
        # Shielded: a caller that stops waiting does not cancel the others' write.
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._pending:
                batch = self._pending[:self._limit]
                del self._pending[:self._limit]
                self.writes += 1
                try:
                    results = await self._write([item for item, _ in batch])
                except Exception as exc:  # noqa: BLE001 (handed to every caller of the batch)
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                batch = []
        finally:
            self._task = None
            for _, future in batch + self._pending:  # cancelled mid-write: tell the callers
                if not future.done():
                    future.cancel()
            self._pending = []
