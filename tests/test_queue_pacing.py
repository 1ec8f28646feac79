"""The dispatcher's queue loop with the real database and Asterisk: an idle
dispatcher is woken by NOTIFY, not by its poll; hand-offs to Asterisk are
paced (AMIVONO_SMS_PER_SECOND); sends in flight are capped
(AMIVONO_SMS_CONCURRENCY)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import asyncpg
import pytest

from sandbox.processes import Proc

from .conftest import start_dispatcher, wait_for

SMS = {"from": "+46736265400", "to": "+46736265449", "message": "Paced"}
RATE = 5.0  # hand-offs a second: 0.2 s apart
CAP = 2
# "[2026-11-27 12:45:22.048] VERBOSE[...] ... 'message 42 attempt 57: SMS to ..."
CONSOLE_LINE = re.compile(
    r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})\].*'AMIVONO_SMS' to 'message (\d+) attempt")


@pytest.fixture(scope="module")
async def paced(pool: asyncpg.Pool, sandbox) -> AsyncIterator[Proc]:
    """One dispatcher that polls only every 30 s, paced and capped. Work left
    due by earlier test modules is moved out of its way first: a due time
    within its poll would wake it, and the wake-up test would not show that
    NOTIFY did."""
    await pool.execute("UPDATE sms_messages SET due_at = greatest(due_at, now() + interval '1 day')"
                       " WHERE due_at IS NOT NULL")
    proc = start_dispatcher(f"paced-{time.time_ns()}", AMIVONO_POLL_SECONDS="30",
                            AMIVONO_SMS_PER_SECOND=str(RATE), AMIVONO_SMS_CONCURRENCY=str(CAP))
    try:
        await wait_for(lambda: "sms: connected: sending" in proc.log(), 15, what="dispatcher up")
        yield proc
    finally:
        proc.stop()


async def create(client, auth, n: int) -> list[int]:
    async def one(i: int) -> int:
        response = await client.post("/messages/sms", headers=auth,
                                     json={**SMS, "message": f"Paced {i}"})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def all_sent(pool: asyncpg.Pool, ids: list[int]) -> bool:
    done = await pool.fetchval("SELECT count(*) FROM sms_messages WHERE id = ANY($1::bigint[])"
                               " AND sent_count = 1", ids)
    return done == len(ids)


async def test_a_post_wakes_an_idle_dispatcher_at_once(client, auth, pool, paced):
    [message_id] = await create(client, auth, 1)
    # Its poll is 30 s away: only the NOTIFY the API sends after the commit
    # can bring it to the message this soon.
    await wait_for(lambda: all_sent(pool, [message_id]), 8, what="send woken by NOTIFY")
    waited = await pool.fetchval(
        "SELECT extract(epoch FROM a.started_at - m.created_at) FROM sms_attempts a "
        "JOIN sms_messages m ON m.id = a.message_id WHERE m.id = $1", message_id)
    assert waited < 5, waited


def hand_offs(console: Path, start: int, ids: list[int]) -> list[datetime]:
    """When the gateway console showed each message's send (its first ARI
    request, right after the pacer let it go), oldest first."""
    with console.open() as f:
        f.seek(start)
        text = f.read()
    wanted = {str(i) for i in ids}
    return sorted(datetime.fromisoformat(m.group(1)) for line in text.splitlines()
                  if (m := CONSOLE_LINE.match(line)) and m.group(2) in wanted)


async def test_hand_offs_to_asterisk_are_paced(client, auth, pool, gateway, paced):
    console = gateway.dir / "log" / "messages.log"
    start = console.stat().st_size
    ids = await create(client, auth, 10)
    await wait_for(lambda: all_sent(pool, ids), 20, what="10 sends")
    times = await wait_for(lambda: len(t := hand_offs(console, start, ids)) == 10 and t, 5,
                           what="10 console lines")
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    # 0.2 s apart: nine gaps of a burst of ten. Measured where Asterisk logs
    # them, so one late request may shorten one gap, never the whole.
    assert (times[-1] - times[0]).total_seconds() >= 9 / RATE - 0.1, gaps
    assert sum(g < 0.6 / RATE for g in gaps) <= 1, gaps


async def test_sends_in_flight_never_exceed_the_cap(client, auth, pool, paced):
    ids = await create(client, auth, 10)
    await wait_for(lambda: all_sent(pool, ids), 20, what="10 sends")
    # Every attempt this dispatcher ever opened, from its claim to its outcome.
    rows = await pool.fetch("SELECT started_at, finished_at FROM sms_attempts "
                            "WHERE dispatcher = $1", paced.name.removeprefix("dispatcher-"))
    assert len(rows) >= 10 and all(r["finished_at"] is not None for r in rows)
    # A finish sorts before a start at the same instant (-1 before +1).
    events = sorted([(r["started_at"], 1) for r in rows] + [(r["finished_at"], -1) for r in rows])
    open_now = most = 0
    for _, change in events:
        open_now += change
        most = max(most, open_now)
    # Held by the pacer, claimed sends stay open: the cap is reached, not passed.
    assert most == CAP, most
