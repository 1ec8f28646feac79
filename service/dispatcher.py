"""The dispatcher: claims due sends from PostgreSQL and hands them to a transport.

Any number of dispatchers may run against one database. A claim is one SQL
statement (FOR UPDATE SKIP LOCKED) that leases the rows and opens an attempt
for each; a dispatcher that dies leaves leases that run out, and the next
claim takes the work over (see sql/sms_messages.sql). SIGTERM stops claiming
and lets the sends in flight finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time

import asyncpg

from . import database
from .queries import queries
from .queue_signal import DueListener
from .settings import Settings
from .sms_transports import OutgoingSms, SendResult, SmsTransport

log = logging.getLogger(__name__)

PURGE_EVERY_SECONDS = 600.0


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Pacer:
    """Spaces hand-offs to at most `rate` per second (a PJSIP taskprocessor
    queue of 500 makes Asterisk refuse requests, so we never burst)."""

    def __init__(self, rate: float) -> None:
        self._gap = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self._gap:
            return
        async with self._lock:
            now = time.monotonic()
            if self._next > now:
                await asyncio.sleep(self._next - now)
            self._next = max(now, self._next) + self._gap


class Dispatcher:
    def __init__(self, settings: Settings, transport: SmsTransport, name: str = "") -> None:
        self.settings = settings
        self.transport = transport
        self.name = name or settings.dispatcher_name or default_name()
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._pacer = Pacer(settings.sms_per_second)
        self.pool: asyncpg.Pool | None = None

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        await database.migrate(s.database_url)
        self.pool = await database.create_pool(
            s.database_url, min_size=2, max_size=max(4, s.sms_concurrency // 4)
        )
        listener = DueListener(s.database_url, self._wake)
        transport_stop = asyncio.Event()
        transport_task = asyncio.create_task(self.transport.run(transport_stop))
        log.info("dispatcher %s started (transport %s)", self.name, self.transport.name)
        last_purge = 0.0
        was_ready = False
        try:
            while not stop.is_set():
                await listener.ensure()
                self._wake.clear()
                ready = self.transport.ready()
                if ready != was_ready:
                    log.warning("transport %s %s", self.transport.name,
                                "connected: sending" if ready else "disconnected: holding sends")
                    was_ready = ready
                free = s.sms_concurrency - len(self._in_flight) if ready else 0
                claimed = 0
                if free > 0:
                    claimed = await self._claim(free)
                if time.monotonic() - last_purge > PURGE_EVERY_SECONDS:
                    last_purge = time.monotonic()
                    await self._quietly(queries.idempotency_keys.purge_expired(self.pool))
                if free > 0 and claimed == free:
                    await asyncio.sleep(0)  # more may be due: claim again at once
                    continue
                await self._sleep(stop)
        finally:
            if self._in_flight:
                log.info(
                    "dispatcher %s: finishing %d sends in flight", self.name, len(self._in_flight)
                )
                await asyncio.gather(*self._in_flight, return_exceptions=True)
            transport_stop.set()
            await asyncio.gather(transport_task, return_exceptions=True)
            await listener.close()
            await self.pool.close()
            log.info("dispatcher %s stopped", self.name)

    async def _quietly(self, aw: object) -> object:
        try:
            return await aw  # type: ignore[misc]
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("database unavailable: %s", exc)
            return None

    async def _sleep(self, stop: asyncio.Event) -> None:
        timeout = self.settings.poll_seconds
        if not self.transport.ready():
            timeout = min(timeout, 0.2)
        until_due = await self._quietly(queries.sms_messages.seconds_until_due(self.pool))
        if isinstance(until_due, float):
            timeout = max(0.0, min(timeout, until_due + 0.005))
        if timeout <= 0:
            return
        waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _claim(self, limit: int) -> int:
        assert self.pool is not None
        try:
            rows = await queries.sms_messages.claim_due_sends(
                self.pool,
                limit=limit,
                dispatcher=self.name,
                transport=self.transport.name,
                lease_seconds=float(self.settings.lease_seconds),
            )
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("claim failed: %s", exc)
            await asyncio.sleep(1.0)
            return 0
        for row in rows:
            if row["attempt_id"] is None:
                continue  # stopped while leased: it only left the queue
            sms = OutgoingSms(
                row["id"], row["attempt_id"], row["from_number"], row["to_number"], row["body"]
            )
            task = asyncio.create_task(self._send(sms), name=f"sms-{sms.message_id}")
            self._in_flight.add(task)
            task.add_done_callback(self._done)
        return len(rows)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wake.set()  # a slot is free

    async def _send(self, sms: OutgoingSms) -> None:
        await self._pacer.wait()
        try:
            result = await self.transport.send(sms)
        except Exception as exc:  # a transport bug must not kill the dispatcher
            log.exception("transport %s failed on message %s", self.transport.name, sms.message_id)
            result = SendResult("failed", f"transport error: {type(exc).__name__}: {exc}")
        log.info(
            "message %s attempt %s to %s: %s (%s)",
            sms.message_id,
            sms.attempt_id,
            sms.to_number,
            result.outcome,
            result.detail,
        )
        await self._finish(sms, result)

    async def _finish(self, sms: OutgoingSms, result: SendResult) -> None:
        assert self.pool is not None
        for delay in (0.0, 0.5, 2.0, 5.0):
            await asyncio.sleep(delay)
            try:
                await queries.sms_messages.finish_send(
                    self.pool,
                    attempt_id=sms.attempt_id,
                    outcome=result.outcome,
                    detail=result.detail,
                    max_failures=self.settings.sms_max_failures,
                    minute_seconds=float(self.settings.minute_seconds),
                    retry_seconds=float(self.settings.sms_retry_seconds),
                )
                return
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("recording attempt %s failed: %s", sms.attempt_id, exc)
        # The lease will run out and the next claim closes the attempt as 'unknown'.
        log.error("attempt %s could not be recorded; its lease will expire", sms.attempt_id)


async def run_forever(settings: Settings, transport: SmsTransport, stop: asyncio.Event) -> None:
    dispatcher = Dispatcher(settings, transport)
    with contextlib.suppress(asyncio.CancelledError):
        await dispatcher.run(stop)
