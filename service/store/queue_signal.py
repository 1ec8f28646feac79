"""The wake-up signal from the API to the dispatchers: PostgreSQL NOTIFY.

A NOTIFY inside the insert transaction would take PostgreSQL's global notify
lock at every commit, so the API notifies after commit, and at most once per
`interval` per process however many messages arrive. Dispatchers LISTEN on a
dedicated connection and poll as a fallback, so a lost signal only delays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import asyncpg

from service.store.database import OUTAGE, Executor, OutageLog

CHANNEL = "amivono_due"
CANCEL_CHANNEL = "amivono_cancel"  # payload: the voice attempt to hang up
WEBHOOK_CHANNEL = "amivono_webhooks"  # sent by webhook_emit (migrations/005_webhooks.sql)
log = logging.getLogger(__name__)


class DueNotifier:
    """Coalesces 'there is new work' into at most one NOTIFY per interval."""

    # 5 ms: a message accepted during the pause waits for it before a
    # dispatcher hears of it (20 ms saved 2% of the API's CPU under load but
    # put 201 -> claimed at p50 / p99 7 / 20 ms for calls paced at 50/s,
    # against 4 / 16: bench/README.md, issue 12).
    def __init__(self, pool: asyncpg.Pool, interval: float = 0.005) -> None:
        self._pool = pool
        self._interval = interval
        self._pending = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._outage = OutageLog("NOTIFY")

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="due-notifier")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def poke(self) -> None:
        self._pending.set()

    async def _run(self) -> None:
        while True:
            await self._pending.wait()
            self._pending.clear()
            try:
                await self._pool.execute("SELECT pg_notify($1, '')", CHANNEL)
                self._outage.recovered()
            except OUTAGE as exc:  # dispatchers poll meanwhile
                self._outage.failed(exc)
            await asyncio.sleep(self._interval)


class Listener:
    """LISTENs on a dedicated connection (never a pooled one) and calls the
    callback of each channel with the payload. `ensure()` checks the
    connection is alive and reconnects it; after a reconnection every
    callback gets None, since signals may have been missed meanwhile."""

    CHECK_EVERY = 5.0  # seconds between liveness checks

    def __init__(self, dsn: str, callbacks: dict[str, Callable[[str | None], None]]) -> None:
        self._dsn = dsn
        self._callbacks = callbacks
        self._conn: asyncpg.Connection | None = None
        self._checked = 0.0
        self._failing = False  # logged once per outage

    async def _alive(self) -> bool:
        if self._conn is None or self._conn.is_closed():
            return False
        now = time.monotonic()
        if now - self._checked < self.CHECK_EVERY:
            return True
        self._checked = now
        try:
            # A half-open TCP connection looks open but delivers nothing.
            await asyncio.wait_for(self._conn.fetchval("SELECT 1"), 2.0)
            return True
        except OUTAGE:  # TimeoutError is an OSError
            self._conn.terminate()
            return False

    async def ensure(self) -> None:
        if await self._alive():
            return
        try:
            self._conn = await asyncpg.connect(self._dsn)
            for channel, callback in self._callbacks.items():
                await self._conn.add_listener(
                    channel, lambda _c, _p, _ch, payload, cb=callback: cb(payload))
                callback(None)
        except OUTAGE as exc:
            if not self._failing:
                log.warning("LISTEN connection failed (polling meanwhile): %s", exc)
            self._failing = True
            if self._conn is not None:
                self._conn.terminate()
            self._conn = None
            return
        if self._failing:
            log.warning("LISTEN connection back")
            self._failing = False

    async def close(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()


async def notify_webhooks(pool: Executor) -> None:
    """Wake the webhook workers (for deliveries made outside the triggers)."""
    await pool.execute("SELECT pg_notify($1, '')", WEBHOOK_CHANNEL)


async def notify_cancel(pool: Executor, attempt_id: int) -> None:
    """Ask whichever dispatcher holds this call to hang it up."""
    await pool.execute("SELECT pg_notify($1, $2)", CANCEL_CHANNEL, str(attempt_id))
