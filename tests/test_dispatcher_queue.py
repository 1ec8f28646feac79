"""The queue under several dispatchers, crashes and shutdowns, with the real
gateway and carrier Asterisk at the end of every send."""

from __future__ import annotations

import asyncio
import signal
import time

import asyncpg
import pytest

from sandbox.carrier_logs import received_sms
from service.store.queries import queries

from .conftest import TEST_ENV, start_dispatcher, wait_for
from .netfaults import DelayProxy

ARI_PORT = int(TEST_ENV["AMIVONO_HTTP_PORT"])
SMS = {"from": "+46736265400", "to": "+46736265449", "message": "Queue test"}


def arrivals_by_id(carrier) -> dict[str, int]:
    counts: dict[str, int] = {}
    for m in received_sms(carrier):
        counts[m["message_id"]] = counts.get(m["message_id"], 0) + 1
    return counts


async def create(client, auth, n: int, **changes) -> list[int]:
    async def one(i: int) -> int:
        response = await client.post(
            "/messages/sms", headers=auth, json={**SMS, "message": f"Queue test {i}", **changes}
        )
        assert response.status_code == 201, response.text
        return response.json()["id"]

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def attempts(pool, ids: list[int]) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT * FROM sms_attempts WHERE message_id = ANY($1::bigint[]) ORDER BY id", ids
    )


async def all_sent(pool, ids: list[int], sends: int) -> bool:
    done = await pool.fetchval(
        "SELECT count(*) FROM sms_messages WHERE id = ANY($1::bigint[]) AND sent_count = $2",
        ids,
        sends,
    )
    return done == len(ids)


async def test_two_dispatchers_send_everything_exactly_once(client, auth, pool, carrier):
    names = [f"twin-a-{time.time_ns()}", f"twin-b-{time.time_ns()}"]
    procs = [start_dispatcher(n, AMIVONO_SMS_CONCURRENCY="4") for n in names]
    try:
        for p in procs:
            await wait_for(lambda p=p: "connected: sending" in p.log(), 15, what=f"{p.name} up")
        single = await create(client, auth, 60)
        repeated = await create(client, auth, 10, repeat=3, repeat_interval=1)
        await wait_for(lambda: all_sent(pool, single, 1), 30, what="60 single sends")
        await wait_for(lambda: all_sent(pool, repeated, 3), 30, what="10 x 3 repeats")
    finally:
        for p in procs:
            p.stop()
    rows = await attempts(pool, single + repeated)
    assert all(r["outcome"] == "sent" for r in rows)
    per_message: dict[int, list[int]] = {}
    for r in rows:
        per_message.setdefault(r["message_id"], []).append(r["send_number"])
    assert {m: per_message[m] for m in single} == {m: [1] for m in single}
    assert {m: per_message[m] for m in repeated} == {m: [1, 2, 3] for m in repeated}
    assert {r["dispatcher"] for r in rows} == set(names)  # both took part
    counts = await wait_for(
        lambda: (
            (c := arrivals_by_id(carrier))
            and all(c.get(str(m)) == (1 if m in single else 3) for m in single + repeated)
            and c
        ),
        5,
        what="carrier arrivals",
    )
    assert all(counts[str(m)] == 1 for m in single)
    assert all(counts[str(m)] == 3 for m in repeated)


async def test_expired_lease_hands_the_work_to_another_dispatcher(client, auth, pool, carrier):
    """A 'ghost' dispatcher claims a send and never finishes; once its lease is
    moved back past expiry, a real dispatcher takes it over."""
    [message_id] = await create(client, auth, 1)
    async with pool.acquire() as conn:
        # Claim exactly as a dispatcher would, under another name.
        await conn.execute(
            "UPDATE sms_messages SET due_at = now() - interval '1 hour' WHERE id = $1", message_id
        )
        rows = await queries.sms_messages.claim_due_sends(
            conn, limit=1, dispatcher="ghost", transport="none", ready=["none"],
            lease_seconds=600.0,
        )
    assert [r["id"] for r in rows] == [message_id]
    name = f"heir-{time.time_ns()}"
    heir = start_dispatcher(name)
    try:
        # Connected to ARI, so claiming: "started" is logged before that, and a
        # dispatcher that cannot send yet claims nothing, lease or no lease.
        await wait_for(lambda: "sms: connected: sending" in heir.log(), 15, what="heir up")
        await asyncio.sleep(1.5)  # three poll intervals: the lease still holds
        assert [r["dispatcher"] for r in await attempts(pool, [message_id])] == ["ghost"]
        await pool.execute(
            "UPDATE sms_messages SET due_at = now() - interval '1 second' WHERE id = $1", message_id
        )
        await wait_for(lambda: all_sent(pool, [message_id], 1), 10, what="takeover")
    finally:
        heir.stop()
    history = await attempts(pool, [message_id])
    assert [(r["dispatcher"], r["outcome"]) for r in history] == [
        ("ghost", "unknown"),
        (name, "sent"),
    ]
    assert "may have been sent" in history[0]["detail"]
    assert history[0]["send_number"] == history[1]["send_number"] == 1


async def test_sigkill_mid_send_loses_nothing(client, auth, pool, carrier):
    hung = DelayProxy(ARI_PORT, delay=None)  # Asterisk that never answers
    port = await hung.start()
    victim_name = f"victim-{time.time_ns()}"
    victim = start_dispatcher(
        victim_name, AMIVONO_ARI_URL=f"http://127.0.0.1:{port}/ari", AMIVONO_LEASE_SECONDS="300"
    )
    heir = None
    try:
        await wait_for(lambda: "connected: sending" in victim.log(), 15, what="victim up")
        [message_id] = await create(client, auth, 1)
        await wait_for(lambda: attempts(pool, [message_id]), 10, what="victim claimed it")
        await asyncio.sleep(0.3)  # its request to Asterisk is hanging now
        victim.signal(signal.SIGKILL)
        assert victim.wait() == -signal.SIGKILL
        [attempt] = await attempts(pool, [message_id])
        assert attempt["dispatcher"] == victim_name and attempt["finished_at"] is None
        status = await pool.fetchval(
            "SELECT status FROM sms_message_view WHERE id = $1", message_id
        )
        assert status == "sending"

        heir_name = f"heir-{time.time_ns()}"
        heir = start_dispatcher(heir_name)
        await wait_for(lambda: "started" in heir.log(), 15, what="heir up")
        await pool.execute(
            "UPDATE sms_messages SET due_at = now() - interval '1 second' WHERE id = $1", message_id
        )
        await wait_for(lambda: all_sent(pool, [message_id], 1), 10, what="takeover")
    finally:
        victim.stop()
        if heir:
            heir.stop()
        await hung.close()
    history = await attempts(pool, [message_id])
    assert [(r["dispatcher"], r["outcome"]) for r in history] == [
        (victim_name, "unknown"),
        (heir_name, "sent"),
    ]
    await wait_for(lambda: arrivals_by_id(carrier).get(str(message_id)) == 1, 5, what="one arrival")


async def test_sigterm_finishes_the_send_in_flight_then_exits(client, auth, pool, carrier):
    slow = DelayProxy(ARI_PORT, delay=1.0)
    port = await slow.start()
    name = f"graceful-{time.time_ns()}"
    proc = start_dispatcher(name, AMIVONO_ARI_URL=f"http://127.0.0.1:{port}/ari")
    try:
        await wait_for(lambda: "connected: sending" in proc.log(), 15, what="dispatcher up")
        [message_id] = await create(client, auth, 1)
        await wait_for(lambda: attempts(pool, [message_id]), 10, what="send claimed")
        await asyncio.sleep(0.3)  # its request to Asterisk is in the slow proxy now
        proc.signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
    finally:
        proc.stop()
        await slow.close()
    [attempt] = await attempts(pool, [message_id])
    assert (attempt["dispatcher"], attempt["outcome"]) == (name, "sent")
    await wait_for(lambda: arrivals_by_id(carrier).get(str(message_id)) == 1, 5, what="arrival")


async def test_ari_errors_are_retried_with_backoff_then_the_message_fails(
        client, auth, pool, sandbox):
    name = f"misconfigured-{time.time_ns()}"
    proc = start_dispatcher(name, AMIVONO_TRUNK_ENDPOINT="no-such-trunk",
                            AMIVONO_SMS_MAX_FAILURES="3", AMIVONO_SMS_RETRY_SECONDS="0.2")
    try:
        [message_id] = await create(client, auth, 1)
        await wait_for(lambda: pool.fetchval(
            "SELECT status = 'failed' FROM sms_message_view WHERE id = $1", message_id),
            20, what="failed")
    finally:
        proc.stop()
    history = await attempts(pool, [message_id])
    assert [r["outcome"] for r in history] == ["failed"] * 3
    assert all("ARI 404: Endpoint not found" in r["detail"] for r in history)
    gaps = [(b["started_at"] - a["finished_at"]).total_seconds()
            for a, b in zip(history, history[1:], strict=False)]
    assert gaps[0] >= 0.15 and gaps[1] >= 0.35  # 0.2 s, then doubled
    response = await client.get(f"/messages/sms/{message_id}", headers=auth)
    assert response.json()["status"] == "failed" and response.json()["next_send_at"] is None


async def test_gateway_asterisk_restart_holds_sends_then_reconnects(
        client, auth, pool, carrier, gateway):
    name = f"patient-{time.time_ns()}"
    proc = start_dispatcher(name)
    try:
        await wait_for(lambda: "sms: connected: sending" in proc.log(), 15, what="ARI connected")
        gateway.stop()
        await wait_for(lambda: "disconnected: holding sends" in proc.log(), 10,
                       what="dispatcher to notice")
        [message_id] = await create(client, auth, 1)
        await asyncio.sleep(1.5)
        assert await attempts(pool, [message_id]) == []  # held, not failed
        await asyncio.to_thread(gateway.start)
        await wait_for(lambda: all_sent(pool, [message_id], 1), 20, what="sent after restart")
        assert proc.log().count("connected: sending") >= 2
    finally:
        proc.stop()
        if not gateway.running():
            gateway.start()
    [attempt] = await attempts(pool, [message_id])
    assert (attempt["dispatcher"], attempt["outcome"]) == (name, "sent")
    await wait_for(lambda: arrivals_by_id(carrier).get(str(message_id)) == 1, 5,
                   what="arrival")


async def test_attempts_are_append_only(pool, client, auth):
    [message_id] = await create(client, auth, 1)
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE sms_messages SET due_at = now() - interval '1 hour' WHERE id = $1", message_id
        )
        [row] = await queries.sms_messages.claim_due_sends(
            conn, limit=1, dispatcher="ledger", transport="none", ready=["none"],
            lease_seconds=600.0,
        )
        await queries.sms_messages.finish_sends(
            conn,
            attempt_ids=[row["attempt_id"]],
            outcomes=["sent"],
            details=["ok"],
            gateways=[None],
            max_failures=3,
            minute_seconds=1.0,
            retry_seconds=1.0,
        )
        with pytest.raises(asyncpg.RaiseError, match="already final"):
            await conn.execute(
                "UPDATE sms_attempts SET outcome = 'failed' WHERE id = $1", row["attempt_id"]
            )
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("DELETE FROM sms_attempts WHERE id = $1", row["attempt_id"])
