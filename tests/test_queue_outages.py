"""The queue when a dispatcher goes away or Asterisk does not answer: repeats
resume at their interval after an outage (no burst of the missed ones), a
SIGTERM'd dispatcher claims nothing new, and a sendMessage that is never
answered ends as "may have been sent"."""

from __future__ import annotations

import asyncio
import signal
import time

import asyncpg

from sandbox.carrier_logs import received_sms

from .conftest import TEST_ENV, start_dispatcher, wait_for
from .netfaults import DelayProxy, RequestFilterProxy

ARI_PORT = int(TEST_ENV["AMIVONO_HTTP_PORT"])
SMS = {"from": "+46736265400", "to": "+46736265449", "message": "Outage test"}


async def post(client, auth, **changes) -> int:
    response = await client.post("/messages/sms", headers=auth, json={**SMS, **changes})
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def attempts(pool: asyncpg.Pool, message_id: int) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM sms_attempts WHERE message_id = $1 ORDER BY id",
                            message_id)


async def sent_count(pool: asyncpg.Pool, message_id: int) -> int:
    return await pool.fetchval("SELECT sent_count FROM sms_messages WHERE id = $1", message_id)


async def all_sent(pool: asyncpg.Pool, message_id: int, sends: int) -> bool:
    return await sent_count(pool, message_id) == sends


def up(proc) -> bool:
    return "sms: connected: sending" in proc.log()


async def stop(proc) -> None:
    """SIGTERM and wait without blocking the event loop: the proxies in this
    process must keep relaying the ARI WebSocket's close, or the dispatcher
    waits 10 s for it."""
    proc.signal(signal.SIGTERM)
    await asyncio.to_thread(proc.wait, 20)
    proc.stop()


async def test_repeats_resume_one_interval_apart_after_an_outage(client, auth, pool, sandbox):
    before, after = f"before-outage-{time.time_ns()}", f"after-outage-{time.time_ns()}"
    proc = start_dispatcher(before)
    try:
        await wait_for(lambda: up(proc), 15, what="dispatcher up")
        message_id = await post(client, auth, repeat=4, repeat_interval=1)
        await wait_for(lambda: sent_count(pool, message_id), 10, what="first send")
    finally:
        proc.stop()
    # No dispatcher now. Held away until the next send is more than two
    # intervals overdue (the database's clock): two more were due meanwhile.
    await wait_for(lambda: pool.fetchval(
        "SELECT due_at < now() - interval '2.5 seconds' FROM sms_messages WHERE id = $1",
        message_id), 10, what="two intervals missed")
    proc = start_dispatcher(after)
    try:
        await wait_for(lambda: up(proc), 15, what="dispatcher back")
        await wait_for(lambda: all_sent(pool, message_id, 4), 15, what="all four sends")
    finally:
        proc.stop()
    history = await attempts(pool, message_id)
    assert [(a["send_number"], a["outcome"]) for a in history] == [
        (n, "sent") for n in range(1, 5)]
    resumed = [a for a in history if a["dispatcher"] == after]
    assert resumed and history[: -len(resumed)] and all(
        a["dispatcher"] == before for a in history[: -len(resumed)])
    starts = [a["started_at"] for a in history]
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
    outage = len(history) - len(resumed) - 1  # the gap across the outage
    assert gaps[outage] >= 3.4, gaps
    # Back, it sends at once what is overdue, then one send per interval,
    # counted from the send itself: the missed repeats are not caught up in a burst.
    assert min(gaps[outage + 1:]) >= 0.95, gaps


async def test_sigterm_stops_claiming_while_the_send_in_flight_finishes(
        client, auth, pool, carrier):
    slow = DelayProxy(ARI_PORT, delay=1.0)  # each ARI request held a second
    port = await slow.start()
    name = f"terminated-{time.time_ns()}"
    proc = start_dispatcher(name, AMIVONO_ARI_URL=f"http://127.0.0.1:{port}/ari")
    later = None
    try:
        await wait_for(lambda: up(proc), 15, what="dispatcher up")
        first = await post(client, auth)
        await wait_for(lambda: attempts(pool, first), 10, what="first claimed")
        proc.signal(signal.SIGTERM)
        later = await post(client, auth)
        # Still finishing the first send (two slow requests) when the second
        # was committed and its NOTIFY went out: it could claim, and must not.
        assert proc.alive()
        assert await asyncio.to_thread(proc.wait, 20) == 0
    finally:
        await stop(proc)
        await slow.close()
    [attempt] = await attempts(pool, first)
    assert (attempt["dispatcher"], attempt["outcome"]) == (name, "sent")
    assert await attempts(pool, later) == []
    status = await pool.fetchval("SELECT status FROM sms_message_view WHERE id = $1", later)
    assert status == "queued"
    await client.delete(f"/messages/sms/{later}", headers=auth)


class SwallowsSendMessage(RequestFilterProxy):
    """`PUT .../endpoints/sendMessage` is taken and never answered, as by an
    Asterisk that hangs after reading it."""

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self.swallowed = 0

    async def intercept(self, request_line: bytes, client: asyncio.StreamWriter) -> bool:
        if request_line.startswith(b"PUT ") and b"/endpoints/sendMessage" in request_line:
            self.swallowed += 1
            await asyncio.Event().wait()
        return False


async def test_an_unanswered_send_message_fails_as_maybe_sent(client, auth, pool, carrier):
    # Sends of earlier modules still repeating (one every minute) are moved
    # out of the way: this dispatcher would take one, and its request would
    # be swallowed too.
    await pool.execute("UPDATE sms_messages SET due_at = greatest(due_at, now() + "
                       "interval '1 day') WHERE due_at IS NOT NULL")
    hung = SwallowsSendMessage(ARI_PORT)
    port = await hung.start()
    name = f"unanswered-{time.time_ns()}"
    proc = start_dispatcher(name, AMIVONO_ARI_URL=f"http://127.0.0.1:{port}/ari",
                            AMIVONO_SMS_MAX_FAILURES="1")
    try:
        await wait_for(lambda: up(proc), 15, what="dispatcher up")
        message_id = await post(client, auth)
        # The ARI client gives up on a request after 10 s.
        await wait_for(lambda: pool.fetchval(
            "SELECT status = 'failed' FROM sms_message_view WHERE id = $1", message_id),
            20, what="failed")
    finally:
        await stop(proc)
        await hung.close()
    [attempt] = await attempts(pool, message_id)
    # Asterisk read the request and said nothing: it may have sent the SMS, so
    # the attempt is `unknown` (issue 13), and counts as a failure for retries.
    assert (attempt["dispatcher"], attempt["outcome"]) == (name, "unknown")
    assert "may have been sent" in attempt["detail"], attempt["detail"]
    assert hung.swallowed == 1
    assert not [m for m in received_sms(carrier) if m["message_id"] == str(message_id)]
