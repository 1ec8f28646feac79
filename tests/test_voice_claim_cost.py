"""The voice claim's cost: the calls in flight are counted once per claim,
not once for every free slot (with the caps raised, as an operator does for
a fast trunk, that made each claim read tens of thousands of buffers and the
claim the voice path's bottleneck; issue 12).

Asserted on the plan PostgreSQL ran for one claim (EXPLAIN ANALYZE of the
very statement the dispatcher runs): how often each count ran, not time,
which a loaded machine moves."""

from __future__ import annotations

import json
import time
from typing import Any

from service.store.queries import queries


class Explained:
    """Stands in for the connection aiosql is given: runs the statement it
    is handed under EXPLAIN (ANALYZE, BUFFERS) on the real connection."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.plan: dict[str, Any] = {}

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        text = await self.conn.fetchval(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, *args)
        self.plan = json.loads(text)[0]["Plan"]
        return []


def aggregates(plan: dict[str, Any]) -> list[tuple[str, int]]:
    """Every aggregate (a count) in the plan with how many times it ran."""
    found = []
    if plan["Node Type"] == "Aggregate":
        found.append((plan.get("Subplan Name") or plan.get("Parent Relationship", ""),
                      plan["Actual Loops"]))
    for child in plan.get("Plans", []):
        found += aggregates(child)
    return found


async def test_a_claim_counts_the_calls_in_flight_once(pool, db):
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            account = await conn.fetchval(
                "INSERT INTO accounts (name) VALUES ($1) RETURNING id",
                f"claim-cost-{time.time_ns()}")
            # 100 calls in flight on the node: each message leased by its attempt.
            await conn.execute(
                "INSERT INTO voice_messages (account_id, from_number, to_number, file_name, "
                "due_at) SELECT $1, '+46736265400', '+4673651' || lpad(g::text, 4, '0'), "
                "'x.wav', now() + interval '1 hour' FROM generate_series(1, 100) g", account)
            await conn.execute(
                "WITH a AS (INSERT INTO voice_attempts (message_id, dispatcher, gateway) "
                "SELECT id, 'claim-cost', 'default' FROM voice_messages WHERE account_id = $1 "
                "RETURNING id, message_id) "
                "UPDATE voice_messages m SET lease_attempt_id = a.id FROM a "
                "WHERE m.id = a.message_id", account)
            explained = Explained(conn)
            # A cap of 400 with 100 in flight: 300 free slots to fill.
            await queries.voice_messages.claim_due_calls(
                explained, limit=300, gateways=["default"], caps=[400], fallback="default",
                dispatcher="claim-cost", lease_seconds=600.0)
        finally:
            await tx.rollback()
    runs = aggregates(explained.plan)
    # The calls in flight are counted, and the free slots too: each once.
    # Counted per free slot, the count of the calls in flight ran 300 times.
    assert runs and all(loops == 1 for _, loops in runs), runs
