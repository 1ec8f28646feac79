"""The dispatcher: claims due work from PostgreSQL and hands it to Asterisk.

Any number of dispatchers may run against one database. Each queue (SMS
sends, voice calls) has a worker whose claim is one SQL statement (FOR UPDATE
SKIP LOCKED) that leases the rows and opens an attempt for each; a dispatcher
that dies leaves leases that run out, and the next claim takes the work over
(see sql/sms_messages.sql). SIGTERM stops claiming and lets the work in
flight finish.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from prometheus_client import start_http_server

from service import metrics
from service.delivery.sms_transports import OutgoingSms, SendResult, SmsTransport
from service.settings import Settings
from service.store import database
from service.store.queries import queries
from service.store.queue_signal import CANCEL_CHANNEL, CHANNEL, Listener
from service.telephony.ari import AriClient

log = logging.getLogger(__name__)

PURGE_EVERY_SECONDS = 600.0
Job = Callable[[], Awaitable[None]]


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Pacer:
    """Spaces starts to at most `rate` per second, so Asterisk never sees a
    burst (a PJSIP taskprocessor queue of 500 makes it refuse requests)."""

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


def is_db_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError | asyncpg.PostgresError | asyncpg.InterfaceError)


class QueueWorker:
    """Claims due jobs of one queue and runs each as a task, `capacity` at once."""

    kind = "queue"

    def __init__(self, dispatcher: Dispatcher, capacity: int, rate: float) -> None:
        self.dispatcher = dispatcher
        self.capacity = capacity
        self.pacer = Pacer(rate)
        self.wake = asyncio.Event()
        self.in_flight: set[asyncio.Task[None]] = set()
        self._was_ready = False

    @property
    def pool(self) -> asyncpg.Pool:
        assert self.dispatcher.pool is not None
        return self.dispatcher.pool

    def ready(self) -> bool:
        raise NotImplementedError

    async def claim(self, limit: int) -> tuple[int, list[Job]]:
        """Claim up to `limit`; return how many rows were taken and the jobs to run."""
        raise NotImplementedError

    async def seconds_until_due(self) -> float | None:
        raise NotImplementedError

    async def loop(self, stop: asyncio.Event) -> None:
        poll = self.dispatcher.settings.poll_seconds
        while not stop.is_set():
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
                except Exception as exc:
                    if not is_db_error(exc):
                        raise
                    log.warning("%s: claim failed: %s", self.kind, exc)
                    await asyncio.sleep(1.0)
                    continue
                for job in jobs:
                    task = asyncio.create_task(self._run(job))
                    self.in_flight.add(task)
                    task.add_done_callback(self._done)
            if free > 0 and taken == free:
                await asyncio.sleep(0)  # more may be due: claim again at once
                continue
            if ready and free <= 0:
                # Every slot is taken: nothing to claim until one frees (wake).
                await self._sleep(stop, poll)
                continue
            timeout = poll if ready else min(poll, 0.2)
            try:
                until_due = await self.seconds_until_due()
            except Exception as exc:
                if not is_db_error(exc):
                    raise
                until_due = None
            if until_due is not None and until_due > 0:
                # Overdue rows we could not claim are held by another dispatcher
                # or over a cap: only a future due time shortens the wait.
                timeout = min(timeout, until_due + 0.005)
            await self._sleep(stop, timeout)

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
        """Run a statement that records an outcome, retrying through short
        database outages; if it still fails, the lease expires and the next
        claim closes the attempt as 'unknown'."""
        for delay in (0.0, 0.5, 2.0, 5.0):
            await asyncio.sleep(delay)
            try:
                return await statement(self.pool, **params)
            except Exception as exc:
                if not is_db_error(exc):
                    raise
                log.warning("%s: recording failed: %s", self.kind, exc)
        log.error("%s: could not record %s; its lease will expire", self.kind, params)
        return None


class SmsWorker(QueueWorker):
    """SMS sends; each through its account's transport, or the default one."""

    kind = "sms"

    def __init__(self, dispatcher: Dispatcher, transports: dict[str, SmsTransport],
                 default: str) -> None:
        s = dispatcher.settings
        super().__init__(dispatcher, s.sms_concurrency, s.sms_per_second)
        if default not in transports:
            raise ValueError(f"default SMS transport {default!r} is not configured")
        self.transports = transports
        self.default = default

    def ready(self) -> bool:
        return any(t.ready() for t in self.transports.values())

    async def seconds_until_due(self) -> float | None:
        return await queries.sms_messages.seconds_until_due(self.pool)

    async def claim(self, limit: int) -> tuple[int, list[Job]]:
        ready = [name for name, t in self.transports.items() if t.ready()]
        rows = await queries.sms_messages.claim_due_sends(
            self.pool, limit=limit, dispatcher=self.dispatcher.name, transport=self.default,
            ready=ready, lease_seconds=float(self.dispatcher.settings.lease_seconds))
        jobs: list[Job] = []
        claimed = time.monotonic()
        for row in rows:
            if row["attempt_id"] is None:
                continue  # stopped while leased: it only left the queue
            sms = OutgoingSms(row["id"], row["attempt_id"], row["from_number"],
                              row["to_number"], row["body"])
            jobs.append(lambda sms=sms, name=row["transport"]: self._send(sms, name, claimed))
        return len(rows), jobs

    async def _send(self, sms: OutgoingSms, transport_name: str, claimed: float) -> None:
        transport = self.transports.get(transport_name)
        if transport is None:
            result = SendResult("failed", f"transport {transport_name} is not configured on "
                                          f"dispatcher {self.dispatcher.name}")
        elif not transport.ready():
            result = SendResult("failed", f"transport {transport_name} is not connected")
        else:
            try:
                result = await transport.send(sms)
            except Exception as exc:  # a transport bug must not kill the dispatcher
                log.exception("transport %s failed on message %s", transport_name,
                              sms.message_id)
                result = SendResult("failed", f"transport error: {type(exc).__name__}: {exc}")
        metrics.CLAIM_TO_SEND.labels("sms").observe(time.monotonic() - claimed)
        metrics.SENDS.labels("sms", result.outcome).inc()
        log.info("sms %s attempt %s to %s via %s: %s (%s)", sms.message_id, sms.attempt_id,
                 sms.to_number, transport_name, result.outcome, result.detail,
                 extra={"message_id": sms.message_id, "attempt_id": sms.attempt_id,
                        "kind": "sms"})
        s = self.dispatcher.settings
        await self.record(
            queries.sms_messages.finish_send, attempt_id=sms.attempt_id,
            outcome=result.outcome, detail=result.detail, max_failures=s.sms_max_failures,
            minute_seconds=float(s.minute_seconds), retry_seconds=float(s.sms_retry_seconds))


class Dispatcher:
    """One dispatcher process: the SMS and voice workers, the LISTEN
    connection that wakes them, and the ARI connection they share."""

    def __init__(self, settings: Settings, sms_transports: dict[str, SmsTransport],
                 ari: AriClient, name: str = "") -> None:
        from service.delivery.voice_calls import VoiceWorker  # voice builds on this module

        self.settings = settings
        self.name = name or settings.dispatcher_name or default_name()
        self.ari = ari
        self.pool: asyncpg.Pool | None = None
        self.sms = SmsWorker(self, sms_transports, settings.sms_transport)
        self.voice = VoiceWorker(self)
        self.workers: list[QueueWorker] = [self.sms, self.voice]

    def _wake_all(self, _payload: str | None) -> None:
        for worker in self.workers:
            worker.wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        await database.migrate(s.database_url)
        self.pool = await database.create_pool(s.database_url, min_size=2, max_size=10)
        listener = Listener(s.database_url, {
            CHANNEL: self._wake_all, CANCEL_CHANNEL: self.voice.cancel_requested})
        background_stop = asyncio.Event()
        background = [
            asyncio.create_task(self.ari.run_events(
                self.voice.on_event, background_stop, on_connect=self.voice.reconcile)),
            *(asyncio.create_task(t.run(background_stop))
              for t in self.sms.transports.values()),
            asyncio.create_task(self._housekeeping(listener, stop)),
        ]
        if s.metrics_port:
            start_http_server(s.metrics_port, addr="127.0.0.1")
        log.info("dispatcher %s started (SMS via %s, default %s; ARI app %s)", self.name,
                 ", ".join(self.sms.transports), self.sms.default, self.ari.app)
        try:
            await asyncio.gather(*(w.loop(stop) for w in self.workers))
        finally:
            for worker in self.workers:
                await worker.drain()
            background_stop.set()
            stop.set()
            await asyncio.gather(*background, return_exceptions=True)
            await listener.close()
            await self.pool.close()
            log.info("dispatcher %s stopped", self.name)

    async def _housekeeping(self, listener: Listener, stop: asyncio.Event) -> None:
        last_purge = 0.0
        while not stop.is_set():
            await listener.ensure()
            if self.settings.metrics_port:
                try:
                    assert self.pool is not None
                    await metrics.refresh_queue(self.pool)
                except Exception as exc:
                    if not is_db_error(exc):
                        raise
            if time.monotonic() - last_purge > PURGE_EVERY_SECONDS:
                last_purge = time.monotonic()
                try:
                    assert self.pool is not None
                    await queries.idempotency_keys.purge_expired(self.pool)
                except Exception as exc:
                    if not is_db_error(exc):
                        raise
            await self.voice.check_cancellations()
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass
