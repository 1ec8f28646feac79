"""Webhook deliveries: takes due rows of the outbox (written by triggers in the
same transaction as each state change), signs them the Standard Webhooks way
and POSTs them, with bounded concurrency overall and per endpoint so a slow or
dead endpoint holds only its own slots; retries on the Standard Webhooks
schedule; disables an endpoint that has failed everything for long enough.

At least once: a row is leased (next_attempt_at) while it is being sent, and
a worker that dies leaves it to be sent again; receivers deduplicate by
webhook-id, which every retry keeps."""

from __future__ import annotations

import functools
import json
import logging
import time
from collections import Counter
from typing import Any

import asyncpg

from service import metrics
from service.delivery import webhook_sender
from service.delivery.queue_worker import Job, QueueWorker, WorkerContext
from service.domain import webhook_signing
from service.domain.egress import allowed_networks
from service.domain.timestamps import iso_ms
from service.store import inbound_messages
from service.store.message_kinds import SMS, VOICE
from service.store.queries import queries

log = logging.getLogger(__name__)

# Standard Webhooks' schedule: the delay before each attempt after the first.
SCHEDULE_SECONDS = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
LEASE_SECONDS = webhook_sender.TOTAL_SECONDS + 15.0


def retry_in(attempts: int, scale: float) -> float | None:
    """Seconds until the next attempt after `attempts` made; None: give up."""
    if attempts >= len(SCHEDULE_SECONDS):
        return None
    return SCHEDULE_SECONDS[attempts] * scale


class WebhookWorker(QueueWorker):
    kind = "webhooks"

    def __init__(self, ctx: WorkerContext) -> None:
        s = ctx.settings
        super().__init__(ctx, s.webhook_concurrency, 0.0)
        self.allowed = allowed_networks(s.webhook_allowed_networks)
        self.per_endpoint: Counter[int] = Counter()

    def ready(self) -> bool:
        return True

    async def seconds_until_due(self) -> float | None:
        due: float | None = await queries.webhook_deliveries.seconds_until_due(self.pool)
        return due

    async def claim(self, limit: int) -> tuple[int, list[Job]]:
        cap = self.settings.webhook_per_endpoint
        busy = [e for e, n in self.per_endpoint.items() if n >= cap]
        # At most `cap` at a time from one claim: with those already in flight
        # an endpoint holds fewer than 2 x cap of this worker's slots.
        asked = min(limit, cap)
        rows = await queries.webhook_deliveries.claim_due(
            self.pool, limit=asked, busy=busy, lease_seconds=LEASE_SECONDS)
        for row in rows:
            self.per_endpoint[row["endpoint_id"]] += 1
        # A full claim says "more may be due" to the loop, which claims again at
        # once only when the claim took all it was allowed.
        taken = limit if rows and len(rows) == asked else len(rows)
        return taken, [functools.partial(self._deliver, row) for row in rows]

    async def _deliver(self, row: asyncpg.Record) -> None:
        try:
            await self._attempt(row)
        except Exception as exc:  # e.g. a renderer's bug: an attempt that failed, not a loop
            log.exception("webhook %s failed before sending", row["webhook_id"])
            await self.record(
                queries.webhook_deliveries.record, id=row["id"], attempts=row["attempts"],
                ok=False, retry_in=retry_in(row["attempts"], self.settings.webhook_retry_scale),
                status_code=None, error=f"{type(exc).__name__}: {exc}", latency_ms=0)
        finally:
            self.per_endpoint[row["endpoint_id"]] -= 1
            if self.per_endpoint[row["endpoint_id"]] <= 0:
                del self.per_endpoint[row["endpoint_id"]]

    async def _attempt(self, row: asyncpg.Record) -> None:
        extra = {"webhook_id": row["webhook_id"], "kind": "webhook"}
        if not row["enabled"]:
            sent = webhook_sender.Sent(False, None, "the endpoint is disabled", 0)
        else:
            body = row["body"] or await self._fix_body(row)
            headers = webhook_signing.headers(row["secret"], row["webhook_id"],
                                              int(time.time()), body.encode())
            sent = await webhook_sender.post(row["url"], body.encode(), headers, self.allowed)
        later = None if sent.ok or not row["enabled"] else retry_in(
            row["attempts"], self.settings.webhook_retry_scale)
        await self.record(
            queries.webhook_deliveries.record, id=row["id"], attempts=row["attempts"],
            ok=sent.ok,
            retry_in=later, status_code=sent.status_code, error=sent.error,
            latency_ms=sent.latency_ms)
        if sent.ok:
            await self.record(queries.webhook_endpoints.succeeded, id=row["endpoint_id"])
        elif row["enabled"]:
            state = await self.record(queries.webhook_endpoints.failed, id=row["endpoint_id"],
                                      disable_after=self.settings.webhook_disable_after)
            if state is not None and not state["enabled"]:
                log.warning("webhook endpoint %s disabled: %s", row["endpoint_id"],
                            state["disabled_reason"], extra=extra)
        outcome = "succeeded" if sent.ok else ("failed" if later is None else "retrying")
        metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()
        log.info("webhook %s %s to endpoint %s, attempt %s: %s (%s, %s ms)%s",
                 row["webhook_id"], row["event_type"], row["endpoint_id"], row["attempts"],
                 outcome, sent.status_code or sent.error, sent.latency_ms,
                 "" if later is None else f"; next in {later:g} s", extra=extra)

    async def _fix_body(self, row: asyncpg.Record) -> str:
        """Render the event once: the resource as its GET returns it now."""
        data: Any = json.loads(row["data"]) if row["data"] is not None else None
        if row["subject_kind"] is not None:
            data = await self._render(row["subject_kind"], row["account_id"], row["subject_id"])
        body = json.dumps({"type": row["event_type"], "timestamp": iso_ms(row["event_at"]),
                           "data": data}, ensure_ascii=False, separators=(",", ":"))
        kept: str = await queries.webhook_deliveries.fix_body(self.pool, id=row["id"], body=body)
        return kept

    async def _render(self, kind: str, account_id: int, subject_id: int) -> Any:
        settings = self.settings
        async with self.pool.acquire() as conn:
            if kind == "inbound":
                return await inbound_messages.load(conn, account_id, subject_id, settings)
            return await {"sms": SMS, "voice": VOICE}[kind].load(
                conn, account_id, subject_id, settings)
