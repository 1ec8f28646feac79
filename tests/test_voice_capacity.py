"""Voice capacity: one file played by 50 calls at once, and the in-flight cap."""

from __future__ import annotations

import asyncio
import time

import pytest

from sandbox.carrier_logs import received_calls

from .audio import analyse, tone
from .conftest import start_dispatcher, wait_for

FROM = "+46736265400"


async def send_calls(client, auth, file: str, numbers: list[str]) -> list[int]:
    async def one(number: str) -> int:
        response = await client.post("/messages/voice", headers=auth,
                                     json={"from": FROM, "to": number, "file": file})
        assert response.status_code == 201, response.text
        return response.json()["id"]
    return list(await asyncio.gather(*(one(n) for n in numbers)))


async def all_final(pool, ids: list[int]) -> bool:
    return await pool.fetchval(
        "SELECT count(*) FROM voice_messages WHERE id = ANY($1::bigint[]) "
        "AND finished_at IS NOT NULL", ids) == len(ids)


async def test_fifty_calls_play_the_same_file_at_once(client, auth, pool, carrier, db,
                                                      sandbox):
    proc = start_dispatcher(f"fifty-{time.time_ns()}", AMIVONO_CALLS_PER_SECOND="100")
    try:
        await wait_for(lambda: "voice: connected" in proc.log(), 15, what="dispatcher")
        await client.put("/files/shared.wav", content=tone(850, 3.0, rate=8000), headers=auth)
        numbers = [f"+4673640{i:04d}" for i in range(50)]
        ids = await send_calls(client, auth, "shared.wav", numbers)
        await wait_for(lambda: all_final(pool, ids), 60, interval=0.2, what="50 calls")
    finally:
        proc.stop()
    rows = await pool.fetch("SELECT outcome, answered_at, ended_at FROM voice_messages "
                            "WHERE id = ANY($1::bigint[])", ids)
    assert [r["outcome"] for r in rows] == ["completed"] * 50
    # They really overlapped: all 50 were in their call within one file length.
    assert max(r["answered_at"] for r in rows) < min(r["ended_at"] for r in rows)
    for number in numbers:
        [heard_call] = await wait_for(
            lambda n=number: [c for c in received_calls(carrier) if c["to"] == n], 10)
        heard = analyse(heard_call["recording"])
        assert heard.frequency == pytest.approx(850, abs=3), (number, heard)
        assert heard.seconds == pytest.approx(3.0, abs=0.15), (number, heard)


async def peak_in_flight(pool, ids: list[int]) -> int:
    spans = await pool.fetch("SELECT started_at, finished_at FROM voice_attempts "
                             "WHERE message_id = ANY($1::bigint[])", ids)
    events = sorted([(s["started_at"], 1) for s in spans] + [(s["finished_at"], -1)
                                                           for s in spans])
    in_flight, peak = 0, 0
    for _, step in events:
        in_flight += step
        peak = max(peak, in_flight)
    return peak


@pytest.mark.parametrize(("cap", "expected"), [
    ({"AMIVONO_CALLS_PER_DISPATCHER": "2"}, 4),  # two dispatchers, two each
    ({"AMIVONO_CALLS_PER_TRUNK": "3"}, 3),       # three on the trunk, however many claim
])
async def test_calls_in_flight_never_exceed_the_caps(client, auth, pool, db, sandbox, cap,
                                                     expected):
    procs = [start_dispatcher(f"capped-{n}-{time.time_ns()}", **cap) for n in "ab"]
    try:
        for proc in procs:
            await wait_for(lambda p=proc: "voice: connected" in p.log(), 15, what="dispatcher")
        await client.put("/files/short.wav", content=tone(850, 1.0, rate=8000), headers=auth)
        ids = await send_calls(client, auth, "short.wav",
                               [f"+4673641{i:04d}" for i in range(12)])
        await wait_for(lambda: all_final(pool, ids), 60, interval=0.2, what="12 calls")
    finally:
        for proc in procs:
            proc.stop()
    assert await peak_in_flight(pool, ids) == expected


async def test_a_dead_dispatchers_calls_stop_counting_against_the_trunk_cap(
        client, auth, pool):
    """A dispatcher that died with calls in flight must not hold the trunk cap
    forever: once its leases run out, the next claim takes the work over."""
    from service.store.queries import queries

    await client.put("/files/cap.wav", content=tone(850, 0.5, rate=8000), headers=auth)
    ids = await send_calls(client, auth, "cap.wav", ["+46736420001", "+46736420002"])
    await pool.execute("UPDATE voice_messages SET due_at = now() - interval '1 hour' "
                       "WHERE id = ANY($1::bigint[])", ids)

    async def claim(name: str) -> list:
        async with pool.acquire() as conn, conn.transaction():
            await queries.voice_messages.serialize_claims(conn)
            rows = await queries.voice_messages.claim_due_calls(
                conn, limit=5, trunk_limit=1, dispatcher=name, lease_seconds=600.0)
        return [r for r in rows if r["id"] in ids]

    assert len(await claim("ghost")) == 1          # the cap of one is now full
    assert await claim("heir") == []                # and holds while the lease lives
    # The ghost's lease runs out (moved back, first in line).
    await pool.execute("UPDATE voice_messages SET due_at = now() - interval '2 hours' "
                       "WHERE id = ANY($1::bigint[]) AND lease_attempt_id IS NOT NULL", ids)
    taken = await claim("heir")
    assert len(taken) == 1 and taken[0]["attempt_id"] is not None
    ghost = await pool.fetchrow("SELECT outcome, detail FROM voice_attempts "
                                "WHERE dispatcher = 'ghost' AND message_id = ANY($1::bigint[])",
                                ids)
    assert ghost["outcome"] == "unknown" and "lease expired" in ghost["detail"]
    await pool.execute("UPDATE voice_messages SET due_at = NULL, finished_at = now(), "
                       "outcome = 'canceled', lease_attempt_id = NULL "
                       "WHERE id = ANY($1::bigint[])", ids)  # leave nothing for others
