"""Voice capacity: one file played by 50 calls at once, and the in-flight caps.
Asserted on claims and spans, not on how fast a loaded machine answers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from sandbox.carrier_logs import received_calls
from service.store.queue_signal import CHANNEL

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


def nothing_else_due() -> str:
    """Claims take the oldest due rows first: another test's leftover would
    take a slot these tests count on."""
    return ("SELECT count(*) FROM voice_messages "
            "WHERE due_at IS NOT NULL AND NOT (id = ANY($1::bigint[]))")


def peak(spans: list[tuple[Any, Any]]) -> int:
    """The most spans open at one moment (an end before a start at a tie)."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running, most = 0, 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


async def test_fifty_calls_play_the_same_file_at_once(client, auth, pool, carrier, db,
                                                      sandbox):
    await client.put("/files/shared.wav", content=tone(850, 3.0, rate=8000), headers=auth)
    numbers = [f"+4673640{i:04d}" for i in range(50)]
    # Queued before the dispatcher starts: its first claim finds all 50 due.
    ids = await send_calls(client, auth, "shared.wav", numbers)
    assert await pool.fetchval(nothing_else_due(), ids) == 0
    name = f"fifty-{time.time_ns()}"
    proc = start_dispatcher(name, AMIVONO_CALLS_PER_SECOND="100")
    try:
        await wait_for(lambda: all_final(pool, ids), 60, interval=0.2, what="50 calls")
    finally:
        proc.stop()
    rows = await pool.fetch("SELECT outcome FROM voice_messages WHERE id = ANY($1::bigint[])",
                            ids)
    assert [r["outcome"] for r in rows] == ["completed"] * 50
    attempts = await pool.fetch(
        "SELECT dispatcher, started_at, playback_started_at, finished_at FROM voice_attempts "
        "WHERE message_id = ANY($1::bigint[])", ids)
    assert len(attempts) == 50 and {a["dispatcher"] for a in attempts} == {name}
    # One claim took all 50 (AMIVONO_CALLS_PER_DISPATCHER is 50): every call
    # was in flight before the first one ended.
    assert max(a["started_at"] for a in attempts) < min(a["finished_at"] for a in attempts)
    # And they really overlapped: the file played on more than one call at once.
    assert peak([(a["playback_started_at"], a["finished_at"]) for a in attempts]) > 1
    for number in numbers:
        [heard_call] = await wait_for(
            lambda n=number: [c for c in received_calls(carrier) if c["to"] == n], 10)
        heard = analyse(heard_call["recording"])
        assert heard.frequency == pytest.approx(850, abs=3), (number, heard)
        assert heard.seconds == pytest.approx(3.0, abs=0.15), (number, heard)


@pytest.mark.parametrize("cap", [
    {"AMIVONO_CALLS_PER_DISPATCHER": "2"},  # two dispatchers, two each
    {"AMIVONO_CALLS_PER_TRUNK": "3"},       # three on the trunk, however many claim
])
async def test_calls_in_flight_never_exceed_the_caps(client, auth, pool, db, sandbox, cap):
    """From the attempts' spans (a claim opens one, the finish closes it):
    never more in flight than the cap, and the cap itself is reached. The 12
    calls become due only once both dispatchers listen, so each one's first
    claim fills what its cap allows, however the two interleave after."""
    await client.put("/files/short.wav", content=tone(850, 1.0, rate=8000), headers=auth)
    ids = await send_calls(client, auth, "short.wav", [f"+4673641{i:04d}" for i in range(12)])
    await pool.execute("UPDATE voice_messages SET due_at = now() + interval '1 hour' "
                       "WHERE id = ANY($1::bigint[])", ids)  # held back for now
    assert await pool.fetchval(nothing_else_due(), ids) == 0
    names = [f"capped-{n}-{time.time_ns()}" for n in "ab"]
    procs = [start_dispatcher(name, **cap) for name in names]
    try:
        for proc in procs:
            await wait_for(lambda p=proc: "voice: connected: sending" in p.log(), 15,
                           what="dispatcher")
        await pool.execute("UPDATE voice_messages SET due_at = now() "
                           "WHERE id = ANY($1::bigint[])", ids)
        await pool.execute("SELECT pg_notify($1, '')", CHANNEL)
        await wait_for(lambda: all_final(pool, ids), 60, interval=0.2, what="12 calls")
    finally:
        for proc in procs:
            proc.stop()
    rows = await pool.fetch("SELECT outcome FROM voice_messages WHERE id = ANY($1::bigint[])",
                            ids)
    assert [r["outcome"] for r in rows] == ["completed"] * 12
    spans = await pool.fetch("SELECT dispatcher, started_at, finished_at FROM voice_attempts "
                             "WHERE dispatcher = ANY($1::text[])", names)
    assert len(spans) == 12  # one attempt each, all by these two
    by = {name: [(s["started_at"], s["finished_at"]) for s in spans if s["dispatcher"] == name]
          for name in names}
    if "AMIVONO_CALLS_PER_DISPATCHER" in cap:
        # Each dispatcher holds two at a time, and both found work to fill them.
        assert [peak(by[name]) for name in names] == [2, 2]
        assert peak(by[names[0]] + by[names[1]]) <= 4
    else:
        # The first claim, whichever dispatcher made it, filled the trunk.
        assert peak(by[names[0]] + by[names[1]]) == 3


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
                conn, limit=5, gateways=["default"], caps=[1], fallback="default",
                dispatcher=name, lease_seconds=600.0)
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
    await pool.execute("UPDATE voice_attempts SET finished_at = clock_timestamp(), "
                       "outcome = 'unknown', detail = 'test over' "
                       "WHERE message_id = ANY($1::bigint[]) AND finished_at IS NULL", ids)
