"""Idempotency-Key: replay, conflicting body, concurrent duplicate."""

from __future__ import annotations

import asyncio

from .conftest import wait_for

GOOD = {"from": "+46736265400", "to": "+46736265449", "message": "Once only", "repeat": 2}


async def count_for(pool, key: str) -> int:
    return await pool.fetchval(
        "SELECT count(*) FROM sms_messages m JOIN idempotency_keys k "
        "ON k.account_id = m.account_id AND (k.response_body->>'id')::bigint = m.id "
        "WHERE k.key = $1",
        key,
    )


async def test_same_key_same_body_replays_the_first_response(client, auth, pool):
    headers = {**auth, "Idempotency-Key": "order-1"}
    first = await client.post("/messages/sms", json=GOOD, headers=headers)
    assert first.status_code == 201
    total = await pool.fetchval("SELECT count(*) FROM sms_messages")
    again = await client.post("/messages/sms", json=dict(reversed(GOOD.items())), headers=headers)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert await pool.fetchval("SELECT count(*) FROM sms_messages") == total


async def test_same_key_other_body_is_422(client, auth, pool):
    headers = {**auth, "Idempotency-Key": "order-2"}
    assert (await client.post("/messages/sms", json=GOOD, headers=headers)).status_code == 201
    total = await pool.fetchval("SELECT count(*) FROM sms_messages")
    other = await client.post("/messages/sms", json={**GOOD, "message": "Twice?"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    assert await pool.fetchval("SELECT count(*) FROM sms_messages") == total


async def test_keys_are_scoped_per_account(client, new_key):
    alice = {"Authorization": f"Bearer {await new_key()}", "Idempotency-Key": "shared"}
    bob = {"Authorization": f"Bearer {await new_key()}", "Idempotency-Key": "shared"}
    a = await client.post("/messages/sms", json=GOOD, headers=alice)
    b = await client.post("/messages/sms", json=GOOD, headers=bob)
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]
    assert "idempotent-replayed" not in b.headers


async def test_concurrent_duplicate_is_409_while_the_first_is_in_progress(client, auth, pool):
    headers = {**auth, "Idempotency-Key": "order-3"}
    async with pool.acquire() as blocker:
        tx = blocker.transaction()
        await tx.start()
        # Hold the first request inside its creation: inserts into sms_messages
        # wait for this lock, after the key was taken.
        await blocker.execute("LOCK TABLE sms_messages IN SHARE MODE")
        first = asyncio.create_task(client.post("/messages/sms", json=GOOD, headers=headers))
        await wait_for(
            lambda: pool.fetchval("SELECT 1 FROM idempotency_keys WHERE key = 'order-3'"),
            5,
            what="key taken",
        )
        second = await client.post("/messages/sms", json=GOOD, headers=headers)
        assert second.status_code == 409, second.text
        assert "in progress" in second.json()["message"]
        assert not first.done()
        await tx.rollback()
    first_response = await first
    assert first_response.status_code == 201
    third = await client.post("/messages/sms", json=GOOD, headers=headers)
    assert third.status_code == 201 and third.json() == first_response.json()
    assert await count_for(pool, "order-3") == 1


async def test_failed_request_does_not_keep_the_key(client, auth):
    headers = {**auth, "Idempotency-Key": "order-4"}
    bad = await client.post("/messages/sms", json={**GOOD, "to": "+1"}, headers=headers)
    assert bad.status_code == 422
    good = await client.post("/messages/sms", json=GOOD, headers=headers)
    assert good.status_code == 201


async def test_bad_keys_are_refused(client, auth):
    for key in ("x" * 256, "caf\u00e9".encode("latin-1")):
        response = await client.post(
            "/messages/sms", json=GOOD, headers={**auth, "Idempotency-Key": key}
        )
        assert response.status_code == 422, key


async def test_key_expires_after_24_hours(client, auth, pool):
    headers = {**auth, "Idempotency-Key": "order-5"}
    first = await client.post("/messages/sms", json=GOOD, headers=headers)
    await pool.execute(
        "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'order-5'"
    )
    again = await client.post("/messages/sms", json=GOOD, headers=headers)
    assert again.status_code == 201 and again.json()["id"] != first.json()["id"]


async def test_a_key_taken_over_from_a_stalled_request_creates_once(client, auth, pool):
    """A request stalled past two minutes loses its key to the client's retry:
    only one of the two may create the message, never both."""
    headers = {**auth, "Idempotency-Key": "order-6"}
    async with pool.acquire() as blocker:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE sms_messages IN SHARE MODE")
        stalled = asyncio.create_task(client.post("/messages/sms", json=GOOD, headers=headers))
        await wait_for(lambda: pool.fetchval(
            "SELECT 1 FROM idempotency_keys WHERE key = 'order-6'"), 5, what="key taken")
        await pool.execute("UPDATE idempotency_keys SET created_at = now() - interval "
                           "'3 minutes' WHERE key = 'order-6'")
        retry = asyncio.create_task(client.post("/messages/sms", json=GOOD, headers=headers))
        await wait_for(lambda: pool.fetchval(
            "SELECT created_at > now() - interval '1 minute' FROM idempotency_keys "
            "WHERE key = 'order-6'"), 5, what="key taken over")
        await tx.rollback()
    first, second = await stalled, await retry
    assert sorted([first.status_code, second.status_code]) == [201, 409]
    assert "taken over" in (first if first.status_code == 409 else second).json()["message"]
    assert await count_for(pool, "order-6") == 1
    account_messages = await pool.fetchval(
        "SELECT count(*) FROM sms_messages m JOIN idempotency_keys k "
        "ON k.account_id = m.account_id WHERE k.key = 'order-6' AND m.text = $1",
        GOOD["message"])
    assert account_messages == 1
