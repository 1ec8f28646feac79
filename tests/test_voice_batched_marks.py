"""Voice marks and outcomes written together: the answer and playback marks,
and the outcomes, of calls in flight at once share transactions
(VoiceWorker.mark_writes, finish_writes), each call's marks still in their
order (answered, then playing, then the outcome)."""

from __future__ import annotations

import asyncio
import time

from .audio import tone
from .conftest import start_dispatcher, wait_for
from .test_voice_capacity import all_final, nothing_else_due, send_calls

CALLS = 20


async def test_concurrent_calls_marks_and_outcomes_share_transactions(client, auth, pool, db,
                                                                    sandbox):
    # 15 s: the calls are still playing when the second hold begins, however
    # long the first one's marks took under load.
    await client.put("/files/marks.wav", content=tone(850, 15.0, rate=8000), headers=auth)
    ids = await send_calls(client, auth, "marks.wav",
                           [f"+4673643{i:04d}" for i in range(CALLS)])
    assert await pool.fetchval(nothing_else_due(), ids) == 0
    proc = start_dispatcher(f"marks-{time.time_ns()}", AMIVONO_CALLS_PER_SECOND="100")
    try:
        await wait_for(lambda: pool.fetchval(
            "SELECT count(*) = $2 FROM voice_attempts WHERE message_id = ANY($1::bigint[])",
            ids, CALLS), 30, interval=0.05, what="the claim")
        # The messages held locked while the calls are answered: the first
        # write of marks waits, and the marks of every other call pile up
        # behind it. Written one by one, each would then commit on its own.
        await hold(pool, ids, "a mark", 3.0)  # every call answered meanwhile
        await wait_for(lambda: pool.fetchval(
            "SELECT count(*) = $2 FROM voice_attempts WHERE message_id = ANY($1::bigint[])"
            " AND playback_started_at IS NOT NULL", ids, CALLS), 20, interval=0.05,
            what="every playback mark")
        # Still playing: the playback mark is each attempt row's latest write.
        rows = await pool.fetch(
            "SELECT xmin::text AS tx, finished_at FROM voice_attempts"
            " WHERE message_id = ANY($1::bigint[])", ids)
        # The same for the outcomes, held while the calls end.
        await hold(pool, ids, "an outcome", 2.0)  # every call ended meanwhile
        await wait_for(lambda: all_final(pool, ids), 60, interval=0.2, what="the calls")
    finally:
        proc.stop()
    assert all(r["finished_at"] is None for r in rows)
    made = len({r["tx"] for r in rows})
    # Twenty calls at once: a few commits (3 to 6 seen), not one each.
    assert made <= CALLS // 2, f"{CALLS} playback marks written in {made} transactions"
    # The outcome is each attempt row's last write.
    made = await pool.fetchval("SELECT count(DISTINCT xmin::text) FROM voice_attempts"
                               " WHERE message_id = ANY($1::bigint[])", ids)
    assert made <= CALLS // 2, f"{CALLS} outcomes recorded in {made} transactions"
    # Each call's marks in order, the message's copies from its attempt.
    calls = await pool.fetch(
        "SELECT m.outcome, m.answered_at AS m_answered, m.sent_at, a.answered_at,"
        " a.playback_started_at, a.finished_at FROM voice_messages m"
        " JOIN voice_attempts a ON a.message_id = m.id WHERE m.id = ANY($1::bigint[])", ids)
    for c in calls:
        assert c["outcome"] == "completed"
        assert c["answered_at"] <= c["playback_started_at"] <= c["finished_at"]
        assert (c["m_answered"], c["sent_at"]) == (c["answered_at"], c["playback_started_at"])


async def hold(pool, ids: list[int], what: str, seconds: float) -> None:
    """Keeps the messages locked until a write of `what` waits on them, then
    `seconds` more: what comes meanwhile piles up behind it."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM voice_messages WHERE id = ANY($1::bigint[])"
                           " FOR UPDATE", ids)
        # The statements begin with their voice_attempts part (pg_stat_activity
        # keeps only the first 1,024 bytes of a query).
        await wait_for(lambda: pool.fetchval(
            "SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query LIKE '%voice_attempts%'"), 20,
            interval=0.05, what=f"{what} waiting on the lock")
        await asyncio.sleep(seconds)
