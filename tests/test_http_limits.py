"""The API's HTTP server against slow and greedy clients, and failed
authentication throttled per client address (service/http/connection_limits.py,
service/domain/auth_throttle.py). Every client here is bounded: it sends a
few bytes and waits at most a few seconds for the server to give up on it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from .conftest import TEST_ENV, Proc, wait_healthy

PORT = int(TEST_ENV["AMIVONO_API_PORT"]) + 11
BASE = f"http://127.0.0.1:{PORT}"
LIMITS = {
    "AMIVONO_API_PORT": str(PORT),
    "AMIVONO_HTTP_HEADER_SECONDS": "1",
    "AMIVONO_HTTP_BODY_SECONDS": "1",
    "AMIVONO_HTTP_BODY_BYTES_PER_SECOND": "1000",
    "AMIVONO_HTTP_IDLE_SECONDS": "1",
    "AMIVONO_HTTP_MAX_CONNECTIONS": "20",
    "AMIVONO_AUTH_FAILURE_BURST": "5",
    "AMIVONO_AUTH_FAILURES_PER_MINUTE": "6",
}
SMS = b'{"from": "+46736265400", "to": "+46736265449", "message": "Hi"}'


@pytest.fixture(scope="module")
async def limited_api(db: str) -> AsyncIterator[str]:
    proc = Proc("api-limits", "api", env=LIMITS)
    try:
        await wait_healthy(BASE, proc)
        yield BASE
    finally:
        proc.stop()


@contextlib.asynccontextmanager
async def connection() -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def answer_and_close(reader: asyncio.StreamReader, within: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when it closed."""
    started = time.monotonic()
    data = await asyncio.wait_for(reader.read(), within)
    return data, time.monotonic() - started


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0


async def test_a_silent_connection_gets_408_and_is_closed(limited_api):
    async with connection() as (reader, _):
        data, took = await answer_and_close(reader, 6)
    assert status_of(data) == 408, data
    assert b"application/json" in data and b"headers not received within 1 s" in data
    assert 0.8 < took < 4


async def test_headers_trickled_byte_by_byte_are_cut_off_at_the_deadline(limited_api):
    """The deadline is for the whole head, not per read: bytes keep coming and
    the connection still ends."""
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    async with connection() as (reader, writer):
        started = time.monotonic()
        sent = 0
        closed = asyncio.ensure_future(reader.read())
        while not closed.done() and time.monotonic() - started < 6:
            with contextlib.suppress(OSError):
                writer.write(request[sent:sent + 1])
                await writer.drain()
            sent += 1
            await asyncio.sleep(0.1)
        data = await asyncio.wait_for(closed, 1)
    assert status_of(data) == 408, data
    assert 5 < sent < 45  # about a second of bytes, then cut


async def test_a_body_shorter_than_its_content_length_gets_408(limited_api, auth):
    head = (f"POST /messages/sms HTTP/1.1\r\nHost: x\r\nAuthorization: {auth['Authorization']}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {len(SMS) + 50}\r\n\r\n")
    async with connection() as (reader, writer):
        writer.write(head.encode() + SMS)
        await writer.drain()
        data, took = await answer_and_close(reader, 8)
    assert status_of(data) == 408, data
    assert b"Request body slower than 1000 bytes/s" in data
    assert took < 5


async def test_a_body_trickled_below_the_rate_gets_408_and_a_fast_enough_one_passes(
        limited_api, auth, pool):
    count = await pool.fetchval("SELECT count(*) FROM sms_messages")

    async def post_slowly(chunk: int, gap: float) -> tuple[int, int]:
        body = SMS[:-1] + b', "client_ref": "' + b"x" * 2000 + b'"}'
        head = (f"POST /messages/sms HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: {auth['Authorization']}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        async with connection() as (reader, writer):
            writer.write(head.encode())
            sent = 0
            answer = asyncio.ensure_future(reader.read())
            started = time.monotonic()
            # Bounded: a server that never gives up fails the test in seconds.
            while sent < len(body) and not answer.done() and time.monotonic() - started < 6:
                with contextlib.suppress(OSError):
                    writer.write(body[sent:sent + chunk])
                    await writer.drain()
                sent += chunk
                await asyncio.sleep(gap)
            data = await asyncio.wait_for(answer, 4)
        return status_of(data), sent

    # 5 bytes a second: refused after the one-second grace, long before the end.
    status, sent = await post_slowly(1, 0.2)
    assert status == 408 and sent < 100
    # 1,500 bytes a second for about 1.4 s: above the floor, answered as usual
    # (422: client_ref is not a field of the API; what matters is it was read).
    status, sent = await post_slowly(300, 0.2)
    assert status == 422 and sent >= 2000
    assert await pool.fetchval("SELECT count(*) FROM sms_messages") == count


async def test_an_idle_kept_alive_connection_is_closed(limited_api):
    async with connection() as (reader, writer):
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        started = time.monotonic()
        data = await asyncio.wait_for(reader.read(), 6)
        took = time.monotonic() - started
    assert status_of(data) == 200
    assert took < 4  # the idle timeout closed it after the answer


async def test_headers_past_64_kib_get_431_and_a_big_body_does_not(limited_api, auth):
    async with connection() as (reader, writer):
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        answer = asyncio.ensure_future(reader.read())
        for n in range(20):  # 20 headers of 10 KB, never ending the head
            if answer.done():
                break
            with contextlib.suppress(OSError):
                writer.write(b"X-Big-%d: " % n + b"a" * 10_000 + b"\r\n")
                await writer.drain()
            await asyncio.sleep(0.02)
        data = await asyncio.wait_for(answer, 3)
    assert status_of(data) == 431, data[:200]
    assert n < 10
    # A body of 70 KB arriving with its headers in one read is no header: it
    # gets the body limit's answer.
    body = SMS.replace(b'"Hi"', b'"' + b"x" * 70_000 + b'"')
    head = (f"POST /messages/sms HTTP/1.1\r\nHost: x\r\nAuthorization: {auth['Authorization']}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n")
    async with connection() as (reader, writer):
        writer.write(head.encode() + body)  # one write: one read at the server
        data, _ = await answer_and_close(reader, 6)
    assert status_of(data) == 413, data[:200]


async def test_connections_past_the_cap_get_503_and_the_server_recovers(limited_api):
    async with contextlib.AsyncExitStack() as stack:
        held = [await stack.enter_async_context(connection()) for _ in range(20)]
        await asyncio.sleep(0.2)
        async with connection() as (reader, _):
            data, took = await answer_and_close(reader, 3)
        assert status_of(data) == 503, data
        assert b"retry-after: 1" in data.lower() and b"Too many connections" in data
        assert took < 1
        # The held ones end at the header deadline; the server takes new ones again.
        for reader, _ in held:
            assert status_of((await answer_and_close(reader, 6))[0]) == 408
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{BASE}/healthz")).status_code == 200


async def test_failed_authentication_is_throttled_per_address(limited_api, auth, pool, new_key):
    guesser = {"X-Forwarded-For": "198.51.100.7"}  # uvicorn trusts it from loopback
    neighbour = {"X-Forwarded-For": "198.51.100.8"}
    async with httpx.AsyncClient(base_url=BASE) as client:
        # A valid key used from the guesser's address before the guessing starts.
        ok = await client.get("/messages/sms", headers={**auth, **guesser})
        assert ok.status_code == 200
        statuses = []
        for n in range(8):
            r = await client.get("/messages/sms",
                                 headers={"Authorization": f"Bearer wrong-{n}", **guesser})
            statuses.append(r.status_code)
        assert statuses == [401] * 5 + [429] * 3
        assert r.json()["message"].startswith("Too many failed authentications")
        assert 1 <= int(r.headers["retry-after"]) <= 10  # 6 a minute: one every 10 s
        # Throttled answers ask nothing of the database: with the key table
        # locked, a query would wait; the 429 does not.
        conn: asyncpg.Connection = await pool.acquire()
        try:
            tx = conn.transaction()
            await tx.start()
            await conn.execute("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            r = await client.get("/messages/sms",
                                 headers={"Authorization": "Bearer wrong-x", **guesser}, timeout=5)
            assert r.status_code == 429 and time.monotonic() - started < 2
            await tx.rollback()
        finally:
            await pool.release(conn)
        # The valid key from the throttled address, and another address, go on.
        assert (await client.get("/messages/sms", headers={**auth, **guesser})).status_code == 200
        # So does a key the process never saw, once the active keys are loaded
        # again (at most every 5 s: not a query per guess).
        fresh = {"Authorization": f"Bearer {await new_key()}"}
        await asyncio.sleep(5)
        assert (await client.get("/messages/sms", headers={**fresh, **guesser})).status_code == 200
        wrong = {"Authorization": "Bearer wrong", **neighbour}
        r = await client.get("/messages/sms", headers=wrong)
        assert r.status_code == 401
        # A missing key costs no query and is not counted.
        for _ in range(10):
            r = await client.get("/messages/sms", headers=neighbour)
            assert r.status_code == 401
