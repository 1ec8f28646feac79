"""Requests per hour per account, shared by every API process."""

from __future__ import annotations

import time

import httpx

from .conftest import TEST_ENV, Proc, wait_healthy

HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-used", "x-ratelimit-reset")
GOOD = {"from": "+46736265400", "to": "+46736265449", "message": "Hi"}


async def test_every_authenticated_response_carries_the_headers(client, auth):
    responses = [
        await client.post("/messages/sms", json=GOOD, headers=auth),  # 201
        await client.get("/messages/sms", headers=auth),  # 200
        await client.get("/messages/sms/999999999", headers=auth),  # 404
        await client.post("/messages/sms", json={"x": 1}, headers=auth),  # 422
        await client.post("/messages/sms", content=b"{", headers=auth),  # 400
        await client.delete("/messages/sms/999999999", headers=auth),  # 404
    ]
    assert [r.status_code for r in responses] == [201, 200, 404, 422, 400, 404]
    for n, response in enumerate(responses, start=1):
        for name in HEADERS:
            assert name in response.headers, (response.status_code, name)
        assert response.headers["x-ratelimit-limit"] == "5000"
        assert response.headers["x-ratelimit-used"] == str(n)
        assert response.headers["x-ratelimit-remaining"] == str(5000 - n)
        reset = int(response.headers["x-ratelimit-reset"])
        assert time.time() < reset <= time.time() + 3601


async def test_limit_holds_across_two_api_processes(pool, new_key, api):
    """One account, limit 10, requests spread over two API processes: the 11th is 429."""
    account = f"limited-{time.time_ns()}"
    key = await new_key()
    await pool.execute(
        "UPDATE accounts SET name = $1, rate_limit_per_hour = 10 WHERE id = "
        "(SELECT account_id FROM api_keys WHERE key_hash = sha256($2::bytea))",
        account,
        key.encode(),
    )
    port = int(TEST_ENV["AMIVONO_API_PORT"]) + 1
    second = Proc("api-second", "api", env={"AMIVONO_API_PORT": str(port)})
    try:
        await wait_healthy(f"http://127.0.0.1:{port}", second)
        headers = {"Authorization": f"Bearer {key}"}
        statuses = []
        async with httpx.AsyncClient(headers=headers) as c:
            for i in range(14):
                base = api if i % 2 == 0 else f"http://127.0.0.1:{port}"
                response = await c.get(f"{base}/messages/sms")
                statuses.append(response.status_code)
                last = response
        assert statuses == [200] * 10 + [429] * 4
        assert last.json()["message"].startswith("API rate limit exceeded")
        assert last.headers["x-ratelimit-remaining"] == "0"
        retry_after = int(last.headers["retry-after"])
        assert 0 < retry_after <= 3600
        # POSTs past the limit create nothing.
        async with httpx.AsyncClient(headers=headers) as c:
            response = await c.post(f"{api}/messages/sms", json=GOOD)
        assert response.status_code == 429
        count = await pool.fetchval(
            "SELECT count(*) FROM sms_messages m JOIN accounts a ON a.id = m.account_id "
            "WHERE a.name = $1",
            account,
        )
        assert count == 0
    finally:
        second.stop()


async def test_window_resets_after_an_hour(client, pool, new_key):
    key = await new_key()
    headers = {"Authorization": f"Bearer {key}"}
    account_id = await pool.fetchval(
        "SELECT account_id FROM api_keys WHERE key_hash = sha256($1::bytea)", key.encode()
    )
    await pool.execute("UPDATE accounts SET rate_limit_per_hour = 1 WHERE id = $1", account_id)
    assert (await client.get("/messages/sms", headers=headers)).status_code == 200
    assert (await client.get("/messages/sms", headers=headers)).status_code == 429
    await pool.execute(
        "UPDATE rate_limit_windows SET window_start = now() - interval '61 minutes' "
        "WHERE account_id = $1",
        account_id,
    )
    response = await client.get("/messages/sms", headers=headers)
    assert response.status_code == 200 and response.headers["x-ratelimit-used"] == "1"
