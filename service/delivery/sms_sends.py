"""SMS sends: claim due SMS (one statement, FOR UPDATE SKIP LOCKED), hand each
to its account's transport, or the default one, and record the outcome; the
next repeat or retry is scheduled by the same statement (see
sql/sms_messages.sql)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import OrderedDict

from service import metrics
from service.delivery.queue_worker import Job, QueueWorker, WorkerContext
from service.delivery.sms_transports import OutgoingSms, SendResult, SmsTransport
from service.store import sms_messages
from service.store.database import BatchRefused
from service.store.queries import queries
from service.store.write_batches import WriteBatch

log = logging.getLogger(__name__)


class SentAttempts:
    """The attempts this process claimed whose delivery report has not been
    heard yet: over ARI it records only those (inbound_sms.py). Bounded: one
    older than `horizon` seconds, or past `limit`, is forgotten, and its late
    report recorded by the inbox replay instead."""

    def __init__(self, horizon: float = 300.0, limit: int = 100_000) -> None:
        self.horizon, self.limit = horizon, limit
        self._claimed: OrderedDict[int, float] = OrderedDict()  # in claim order

    def add(self, attempt_id: int, now: float) -> None:
        self._claimed[attempt_id] = now
        while self._claimed and (len(self._claimed) > self.limit
                                 or now - next(iter(self._claimed.values())) > self.horizon):
            self._claimed.popitem(last=False)

    def take(self, attempt_id: int) -> bool:
        """Whether it was ours; it is forgotten (a report comes once)."""
        return self._claimed.pop(attempt_id, None) is not None


class SmsWorker(QueueWorker):
    """SMS sends; each through its account's transport, or the default one."""

    kind = "sms"

    def __init__(self, ctx: WorkerContext, transports: dict[str, SmsTransport],
                 default: str) -> None:
        s = ctx.settings
        super().__init__(ctx, s.sms_concurrency, s.sms_per_second)
        if default not in transports:
            raise ValueError(f"default SMS transport {default!r} is not configured")
        self.transports = transports
        self.default = default
        # Outcomes that come while the previous one is being written are
        # written together (write_batches.py): one transaction for many sends.
        self.outcomes: WriteBatch[tuple[int, str, str, str | None], None] = WriteBatch(
            self._write_outcomes)
        self.sent = SentAttempts()

    def ready(self) -> bool:
        return any(t.ready() for t in self.transports.values())

    async def seconds_until_due(self) -> float | None:
        due: float | None = await queries.sms_messages.seconds_until_due(self.pool)
        return due

    async def claim(self, limit: int) -> tuple[int, list[Job]]:
        ready = [name for name, t in self.transports.items() if t.ready()]
        rows = await queries.sms_messages.claim_due_sends(
            self.pool, limit=limit, dispatcher=self.ctx.name, transport=self.default,
            ready=ready, lease_seconds=float(self.settings.lease_seconds))
        jobs: list[Job] = []
        claimed = time.monotonic()
        for row in rows:
            if row["attempt_id"] is None:
                continue  # stopped while leased: it only left the queue
            sms = OutgoingSms(row["id"], row["attempt_id"], row["from_number"],
                              row["to_number"], row["body"])
            self.sent.add(sms.attempt_id, claimed)
            jobs.append(functools.partial(self._send, sms, row["transport"], claimed))
        return len(rows), jobs

    async def _send(self, sms: OutgoingSms, transport_name: str, claimed: float) -> None:
        transport = self.transports.get(transport_name)
        if transport is None:
            result = SendResult("failed", f"transport {transport_name} is not configured on "
                                          f"dispatcher {self.ctx.name}")
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
        if result.outcome != "sent":
            self.sent.take(sms.attempt_id)  # no report will come
        metrics.SENDS.labels("sms", result.outcome).inc()
        if result.gateway is not None:
            metrics.GATEWAY_SENDS.labels(result.gateway, "sms", result.outcome).inc()
        log.info("sms %s attempt %s to %s via %s%s: %s (%s)", sms.message_id, sms.attempt_id,
                 sms.to_number, transport_name,
                 f" on gateway {result.gateway}" if result.gateway else "",
                 result.outcome, result.detail,
                 extra={"message_id": sms.message_id, "attempt_id": sms.attempt_id,
                        "kind": "sms"})
        # The job (and its slot) ends once its outcome is committed.
        await self.outcomes.add((sms.attempt_id, result.outcome, result.detail, result.gateway))

    async def _write_outcomes(self, outcomes: list[tuple[int, str, str, str | None]]
                              ) -> list[None | BaseException]:
        s = self.settings
        rules = {"max_failures": s.sms_max_failures, "minute_seconds": float(s.minute_seconds),
                 "retry_seconds": float(s.sms_retry_seconds)}
        if len(outcomes) > 1:
            try:
                await self.record(sms_messages.finish_sends, outcomes=outcomes, **rules)
                return [None] * len(outcomes)
            except BatchRefused as exc:
                log.warning("sms: recording %d outcomes together failed (%s): one by one",
                            len(outcomes), exc)
        # Each on its own, as if never batched: one that cannot be written
        # holds only itself (until_back retries it, as it always did).
        results = await asyncio.gather(*(
            self.record(sms_messages.finish_send, attempt_id=attempt_id, outcome=outcome,
                        detail=detail, gateway=gateway, **rules)
            for attempt_id, outcome, detail, gateway in outcomes), return_exceptions=True)
        return [r if isinstance(r, BaseException) else None for r in results]
