"""The generic queue loop every delivery worker runs: claim due work from
PostgreSQL, run each job as a task up to a capacity, pace the starts, wake on
NOTIFY or poll, and record outcomes through short database outages.

A worker gets a small context (settings, pool, ARI client, dispatcher name),
never its parent, so each kind of work (SMS sends, voice calls) is a module
of its own that depends only on this one.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg

from service.settings import Settings
from service.store.database import OUTAGE, Backoff, OutageLog, until_back

if TYPE_CHECKING:  # the gateway nodes (ARI clients) are only carried here
    from service.delivery.gateway_pool import GatewayPool

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class WorkerContext:
    """What a worker needs from the process it runs in."""

    settings: Settings
    pool: asyncpg.Pool
    gateways: GatewayPool
    name: str  # the dispatcher's name, written on the leases it takes


class FailureLog:
    """Logs an unexpected failure with its traceback the first time it is
    seen, and only a one-line count when the same failure repeats: a loop
    restarting on one bug must not fill the disk."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.seen: dict[str, int] = {}

    def failed(self, exc: BaseException) -> None:
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        key = f"{type(exc).__name__} at {where}"
        count = self.seen.get(key, 0) + 1
        self.seen[key] = count
        if count == 1:
            log.error("%s failed; restarting it", self.what, exc_info=exc)
        else:
            log.error("%s failed again (%s, %d times); restarting it", self.what, key, count)


class Pacer:
    """Spaces starts to at most `rate` per second, so Asterisk never sees a
    burst (a PJSIP taskprocessor queue of 500 makes it refuse requests)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._gap = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._clock = clock
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self._gap:
            return
        async with self._lock:
            now = self._clock()
            if self._next > now:
                await asyncio.sleep(self._next - now)
            self._next = max(now, self._next) + self._gap


class QueueWorker:
    """Claims due jobs of one queue and runs each as a task, `capacity` at once."""

    kind = "queue"
    # (first, cap) seconds of the backoffs: before restarting the loop after
    # an unexpected failure, and between tries while the database is away.
    restart_backoff = (0.5, 30.0)
    outage_backoff = (0.2, 5.0)

    def __init__(self, ctx: WorkerContext, capacity: int, rate: float) -> None:
        self.ctx = ctx
        self.capacity = capacity
        self.pacer = Pacer(rate)
        self.wake = asyncio.Event()
        self.in_flight: set[asyncio.Task[None]] = set()
        self._was_ready = False
        self.outage = OutageLog(self.kind)
        self._outage_backoff = Backoff(*self.outage_backoff)
        self.faults = FailureLog(f"{self.kind} loop")

    @property
    def pool(self) -> asyncpg.Pool:
        return self.ctx.pool

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    def ready(self) -> bool:
        raise NotImplementedError

    async def claim(self, limit: int) -> tuple[int, list[Job]]:
        """Claim up to `limit`; return how many rows were taken and the jobs to run."""
        raise NotImplementedError

    async def seconds_until_due(self) -> float | None:
        raise NotImplementedError

    async def maintain(self) -> None:
        """Called about once a second by the dispatcher's housekeeping."""

    async def loop(self, stop: asyncio.Event) -> None:
        """Runs the queue until `stop`. A database outage is waited out inside
        (_cycle); anything else that escapes restarts the loop after a backoff,
        its traceback logged once per distinct failure: never a dead worker."""
        backoff = Backoff(*self.restart_backoff)
        while not stop.is_set():
            try:
                await self._cycle(stop)
                backoff.reset()
            except Exception as exc:  # a bug or a dependency's surprise: restart, not exit
                self.faults.failed(exc)
                await self._sleep(stop, backoff.next())

    async def _cycle(self, stop: asyncio.Event) -> None:
        """One claim-and-wait round of the loop."""
        poll = self.settings.poll_seconds
        self.wake.clear()
        ready = self.ready()
        if ready != self._was_ready:
            log.warning("%s: %s", self.kind,
                        "connected: sending" if ready else "disconnected: holding sends")
            self._was_ready = ready
        free = self.capacity - len(self.in_flight) if ready else 0
        taken = 0
        if free > 0:
            try:
                taken, jobs = await self.claim(free)
            except OUTAGE as exc:
                self.outage.failed(exc)
                await self._sleep(stop, self._outage_backoff.next())
                return
            self._database_back()
            for job in jobs:
                task = asyncio.create_task(self._run(job))
                self.in_flight.add(task)
                task.add_done_callback(self._done)
        if free > 0 and taken == free:
            await asyncio.sleep(0)  # more may be due: claim again at once
            return
        if ready and free <= 0:
            # Every slot is taken: nothing to claim until one frees (wake).
            await self._sleep(stop, poll)
            return
        timeout = poll if ready else min(poll, 0.2)
        try:
            until_due = await self.seconds_until_due()
        except OUTAGE as exc:
            self.outage.failed(exc)
            await self._sleep(stop, self._outage_backoff.next())
            return
        self._database_back()
        if until_due is not None and until_due > 0:
            # Overdue rows we could not claim are held by another dispatcher
            # or over a cap: only a future due time shortens the wait.
            timeout = min(timeout, until_due + 0.005)
        await self._sleep(stop, timeout)

    def _database_back(self) -> None:
        self.outage.recovered()
        self._outage_backoff.reset()

    async def _run(self, job: Job) -> None:
        await self.pacer.wait()
        await job()

    async def _sleep(self, stop: asyncio.Event, timeout: float) -> None:
        if timeout <= 0:
            return
        waits = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    def _done(self, task: asyncio.Task[None]) -> None:
        self.in_flight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s job failed", self.kind, exc_info=task.exception())
        self.wake.set()  # a slot is free

    async def drain(self) -> None:
        if self.in_flight:
            log.info("%s: finishing %d in flight", self.kind, len(self.in_flight))
            await asyncio.gather(*self.in_flight, return_exceptions=True)

    async def record(self, statement: Callable[..., Awaitable[Any]], **params: Any) -> Any:
        """Run a statement that records an outcome, retrying for as long as the
        database is away: the outcome happened, and an attempt left open would
        become a duplicate once its lease ran out."""
        return await until_back(lambda: statement(self.pool, **params),
                                f"{self.kind}: recording")
