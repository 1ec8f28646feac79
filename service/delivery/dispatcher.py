"""The dispatcher process: claims due work from PostgreSQL and hands it to Asterisk.

Any number of dispatchers may run against one database. Each queue (SMS
sends, voice calls) has a worker whose claim is one SQL statement (FOR UPDATE
SKIP LOCKED) that leases the rows and opens an attempt for each; a dispatcher
that dies leaves leases that run out, and the next claim takes the work over
(see sql/sms_messages.sql). SIGTERM stops claiming and lets the work in
flight finish. This module only wires the workers to the process: the
LISTEN connection that wakes them, the ARI events of every gateway node
(gateway_pool.py), and housekeeping.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
from typing import Any

from prometheus_client import start_http_server

from service import metrics
from service.collector import collect_less
from service.delivery.gateway_pool import GatewayPool, Node
from service.delivery.inbound_sms import InboundSms
from service.delivery.queue_worker import FailureLog, QueueWorker, WorkerContext
from service.delivery.sms_sends import SmsWorker
from service.delivery.sms_transports import SmsTransport
from service.delivery.voice_calls import VoiceWorker
from service.delivery.webhook_worker import WebhookWorker
from service.settings import Settings
from service.store import database
from service.store.queries import queries
from service.store.queue_signal import CANCEL_CHANNEL, CHANNEL, WEBHOOK_CHANNEL, Listener

log = logging.getLogger(__name__)


def _busy(calls: dict[str, int], gateway: str) -> bool:
    return calls.get(gateway, 0) > 0


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Dispatcher:
    """One dispatcher process: the SMS and voice workers, the LISTEN
    connection that wakes them, and the gateway nodes they share. The
    schema is migrated by the command that starts the process tree."""

    def __init__(self, settings: Settings, sms_transports: dict[str, SmsTransport],
                 gateways: GatewayPool, name: str = "") -> None:
        if settings.sms_transport not in sms_transports:
            raise ValueError(f"default SMS transport {settings.sms_transport!r} "
                             "is not configured")
        self.settings = settings
        self.name = name or settings.dispatcher_name or default_name()
        self.gateways = gateways
        self.transports = sms_transports

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        # Started while PostgreSQL is away: wait for it rather than exit.
        pool = await database.until_back(
            lambda: database.create_pool(s.database_url, min_size=2, max_size=10),
            "dispatcher: connecting")
        # What this name's previous run left open is closed by the next claim
        # now, not when its leases run out.
        await database.until_back(lambda: self._expire_own_leases(pool),
                                  "dispatcher: closing the previous run's attempts")
        gateways = self.gateways
        ctx = WorkerContext(settings=s, pool=pool, gateways=gateways, name=self.name)
        sms = SmsWorker(ctx, self.transports, s.sms_transport)
        voice = VoiceWorker(ctx)
        webhooks = WebhookWorker(ctx)
        workers: list[QueueWorker] = [sms, voice, webhooks]

        def wake_all(_payload: str | None) -> None:
            for worker in workers:
                worker.wake.set()

        inbound = InboundSms(s, pool, gateways, sms.wake.set, sms.sent.take)
        collect_less()  # started: see service/collector.py
        handling: set[asyncio.Task[None]] = set()

        def handled(task: asyncio.Task[None]) -> None:
            handling.discard(task)
            exc = None if task.cancelled() else task.exception()
            if isinstance(exc, database.OutageLasted):  # the inbox replay stores it later
                log.warning("inbound SMS not stored yet: the database is away")
            elif exc is not None:
                log.error("inbound SMS failed", exc_info=exc)

        async def on_event(_node: Node, event: dict[str, Any]) -> None:
            if event.get("type") == "TextMessageReceived":
                # Its own task: a slow write must not hold up call events.
                task = asyncio.create_task(inbound.on_event(event))
                handling.add(task)
                task.add_done_callback(handled)
            else:
                await voice.on_event(event)

        async def on_connect(node: Node) -> None:
            for worker in workers:
                worker.wake.set()  # a node (back) with room for work
            await inbound.subscribe(node.ari, node.config.trunk)
            await voice.reconcile(node)

        def on_lost(node: Node) -> None:
            voice.node_lost(node)

        gateways.bind(on_event, on_connect, on_lost, sms.wake.set)
        await database.until_back(lambda: gateways.refresh(pool, lambda name: False),
                                  "dispatcher: reading the gateways")

        listener = Listener(s.database_url, {
            CHANNEL: wake_all, CANCEL_CHANNEL: voice.cancel_requested,
            WEBHOOK_CHANNEL: lambda _payload: webhooks.wake.set()})
        background_stop = asyncio.Event()
        background = [
            *(asyncio.create_task(t.run(background_stop)) for t in self.transports.values()),
            asyncio.create_task(self._housekeeping(ctx, workers, inbound, listener, stop, voice)),
        ]
        if s.metrics_port:
            start_http_server(s.metrics_port, addr="127.0.0.1")
        log.info("dispatcher %s started (SMS via %s, default %s; ARI app %s; gateways %s)",
                 self.name, ", ".join(self.transports), s.sms_transport, gateways.app,
                 ", ".join(gateways.nodes))
        try:
            await asyncio.gather(*(w.loop(stop) for w in workers))
        finally:
            for worker in workers:
                await worker.drain()
            await asyncio.gather(*handling, return_exceptions=True)
            background_stop.set()
            stop.set()
            await asyncio.gather(*background, return_exceptions=True)
            await listener.close()
            try:
                await queries.gateways.forget(pool, dispatcher=self.name)
            except database.OUTAGE:
                pass  # its heartbeat goes stale by itself
            await gateways.close()
            await pool.close()
            log.info("dispatcher %s stopped", self.name)

    async def _expire_own_leases(self, pool: Any) -> None:
        await queries.sms_messages.expire_own_leases(pool, dispatcher=self.name)
        await queries.voice_messages.expire_own_leases(pool, dispatcher=self.name)

    async def _housekeeping(self, ctx: WorkerContext, workers: list[QueueWorker],
                            inbound: InboundSms, listener: Listener,
                            stop: asyncio.Event, voice: VoiceWorker) -> None:
        outage = database.OutageLog("housekeeping")
        faults = FailureLog("housekeeping")
        while not stop.is_set():
            try:
                await listener.ensure()
                calls = voice.calls_per_gateway()
                await self.gateways.refresh(ctx.pool, functools.partial(_busy, calls))
                await self.gateways.heartbeat(ctx.pool, self.name, calls)
                if self.settings.metrics_port:
                    await metrics.refresh_queue(ctx.pool)
                for worker in workers:
                    await worker.maintain()
                await inbound.replay_inbox()
                outage.recovered()
            except database.OUTAGE_OR_LASTED as exc:  # retried next second
                outage.failed(exc)
            except Exception as exc:  # retried next second; housekeeping must go on
                faults.failed(exc)
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass
