"""Health, readiness, Prometheus metrics and structured logs."""

from __future__ import annotations

import json
import os
import re
import time

import asyncpg
import httpx

from .audio import tone
from .conftest import SLOT, TEST_ENV, Proc, start_dispatcher, wait_for, wait_healthy

SMS = {"from": "+46736265400", "to": "+46736265449", "message": "Counted"}


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample, 0 if absent."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == (f"{name}{{{want}}}" if want else name):
            return float(value)
    return 0.0


async def test_healthz_and_readyz(client, sandbox):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"postgres": "ok", "asterisk": "ok"}}


async def test_readyz_is_503_without_asterisk(db):
    port = int(TEST_ENV["AMIVONO_API_PORT"]) + 2
    blind = Proc("api-blind", "api", env={"AMIVONO_API_PORT": str(port),
                                          "AMIVONO_ARI_URL": "http://127.0.0.1:9/ari"})
    try:
        await wait_healthy(f"http://127.0.0.1:{port}", blind)
        async with httpx.AsyncClient() as c:
            response = await c.get(f"http://127.0.0.1:{port}/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "not ready" and body["checks"]["postgres"] == "ok"
        assert body["checks"]["asterisk"] != "ok"
    finally:
        blind.stop()


async def test_readyz_is_503_without_postgres(settings, sandbox):
    """The app with a pool to a port where nothing listens (the machine's
    PostgreSQL keeps running) and the real gateway's ARI: not ready, and the
    check says which (an error's type name, not its text)."""
    from service.http.app import create_app
    from service.telephony.ari import AriClient

    app = create_app(settings)
    app.state.settings = settings
    app.state.pool = await asyncpg.create_pool("postgresql://postgres@127.0.0.1:9/none",
                                               min_size=0, max_size=1)
    app.state.ari = AriClient(settings.ari_url, settings.ari_user, settings.ari_password,
                              app=settings.ari_app, timeout=5.0)
    try:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            assert (await c.get("/healthz")).status_code == 200  # alive, just not ready
            response = await c.get("/readyz")
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["status"] == "not ready" and body["checks"]["asterisk"] == "ok"
        assert re.fullmatch(r"[A-Za-z_]\w*", body["checks"]["postgres"]), body
        assert body["checks"]["postgres"] != "ok"
    finally:
        await app.state.ari.close()
        await app.state.pool.close()


async def scrape(client: httpx.AsyncClient) -> str:
    page = await client.get("/metrics")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain")
    return page.text


async def test_accepted_counts_each_new_message_once(client, auth):
    """+1 for each 201 that made a message; replays, refusals and conflicts add nothing."""
    text = await scrape(client)
    before = {kind: sample(text, "amivono_messages_accepted_total", kind=kind)
              for kind in ("sms", "voice")}
    key = {"Idempotency-Key": f"m-{time.time_ns()}"}
    made = 0
    for n in range(3):
        response = await client.post("/messages/sms", json={**SMS, "message": f"Counted {n}"},
                                     headers={**auth, **key} if n == 0 else auth)
        assert response.status_code == 201 and "Idempotent-Replayed" not in response.headers
        made += 1
    replay = await client.post("/messages/sms", json={**SMS, "message": "Counted 0"},
                               headers={**auth, **key})
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    other_body = await client.post("/messages/sms", json=SMS, headers={**auth, **key})
    assert other_body.status_code == 422
    assert (await client.post("/messages/sms", json={"x": 1}, headers=auth)).status_code == 422
    uploaded = await client.put("/files/counted.wav", content=tone(440, 0.5), headers=auth)
    assert uploaded.status_code == 201
    voice = {"from": SMS["from"], "to": SMS["to"], "file": "counted.wav"}
    voice_key = {"Idempotency-Key": f"v-{time.time_ns()}"}
    created = await client.post("/messages/voice", json=voice, headers={**auth, **voice_key})
    assert created.status_code == 201
    again = await client.post("/messages/voice", json=voice, headers={**auth, **voice_key})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert (await client.post("/messages/voice", json={**voice, "file": "none.wav"},
                              headers=auth)).status_code == 422
    text = await scrape(client)
    assert sample(text, "amivono_messages_accepted_total", kind="sms") == before["sms"] + made
    assert sample(text, "amivono_messages_accepted_total", kind="voice") == before["voice"] + 1
    # Nothing to call later in the session.
    url = f"/messages/voice/{created.json()['id']}"
    assert (await client.delete(url, headers=auth)).status_code == 200


# The queue's states as the README defines them, counted here independently.
QUEUE_NOW = """
SELECT count(*) FILTER (WHERE due_at <= now() AND lease_attempt_id IS NULL) AS due,
       count(*) FILTER (WHERE due_at > now() AND lease_attempt_id IS NULL) AS scheduled,
       count(*) FILTER (WHERE due_at IS NOT NULL AND lease_attempt_id IS NOT NULL) AS in_flight
FROM sms_messages"""
STATES = ("due", "scheduled", "in_flight")


async def queue_seen(client: httpx.AsyncClient, pool: asyncpg.Pool) -> dict[str, float]:
    """amivono_queue_depth{kind="sms"}, checked against the database: the scrape
    is taken between two counts that agree (a scheduled row can fall due meanwhile)."""
    async def steady() -> tuple[dict[str, float], dict[str, float]] | None:
        first = dict(await pool.fetchrow(QUEUE_NOW))
        text = await scrape(client)
        second = dict(await pool.fetchrow(QUEUE_NOW))
        if first != second:
            return None
        return first, {state: sample(text, "amivono_queue_depth", kind="sms", state=state)
                       for state in STATES}

    counted, shown = await wait_for(steady, 20, what="a steady queue to scrape")
    assert shown == counted
    return shown


async def test_queue_depth_follows_the_due_rows(client, pool):
    """No dispatcher runs in this test: what is posted stays due until it is
    claimed (then it is in flight) or canceled. The claim is the dispatchers'
    own statement, made for an account on a transport no sandbox dispatcher
    has, so no real one takes the row first."""
    from service.store import sms_messages
    from service.store.api_keys import create_key
    from service.store.queries import queries

    account = f"queue-{os.getpid()}-{time.time_ns()}"
    auth = {"Authorization": f"Bearer {await create_key(pool, account)}"}
    await pool.execute("UPDATE accounts SET sms_transport = 'dongle-ami' WHERE name = $1",
                       account)
    before = await queue_seen(client, pool)
    ids = []
    for n in range(3):
        response = await client.post("/messages/sms", json={**SMS, "message": f"Due {n}"},
                                     headers=auth)
        assert response.status_code == 201
        ids.append(response.json()["id"])
    after_posting = await queue_seen(client, pool)
    assert after_posting["due"] >= before["due"] + 3
    assert sum(after_posting.values()) == sum(before.values()) + 3
    claimed = await queries.sms_messages.claim_due_sends(
        pool, limit=1, dispatcher=f"queue-test-{time.time_ns()}", transport="ari-pjsip",
        ready=["dongle-ami"], lease_seconds=600.0)
    assert len(claimed) == 1 and claimed[0]["attempt_id"] is not None
    in_flight = await queue_seen(client, pool)
    assert in_flight["in_flight"] == after_posting["in_flight"] + 1
    assert sum(in_flight.values()) == sum(after_posting.values())
    for message_id in ids:
        canceled = await client.delete(f"/messages/sms/{message_id}", headers=auth)
        assert canceled.status_code == 200
    # The claimed send ends (as a dispatcher would record it), leaving nothing behind.
    await sms_messages.finish_send(pool, attempt_id=claimed[0]["attempt_id"],
                                   outcome="failed", detail="queue depth test", gateway=None,
                                   max_failures=1, minute_seconds=1.0, retry_seconds=1.0)
    after = await queue_seen(client, pool)
    assert sum(after.values()) == sum(after_posting.values()) - 3 - (
        claimed[0]["id"] not in ids)  # a row of another account's, if it was older


async def counted_by_db(pool: asyncpg.Pool, dispatcher: str) -> dict[str, int]:
    rows = await pool.fetch("SELECT outcome, count(*) AS n FROM sms_attempts "
                            "WHERE dispatcher = $1 AND outcome IS NOT NULL GROUP BY outcome",
                            dispatcher)
    return {r["outcome"]: r["n"] for r in rows}


async def sends_match_attempts(url: str, pool: asyncpg.Pool, dispatcher: str,
                               message_id: int) -> str:
    """Once `message_id` is sent by `dispatcher`, the page at `url` counts exactly
    that dispatcher's finished attempts, by outcome (it may also have sent
    messages earlier tests left due)."""
    async def agree() -> str | None:
        mine = await pool.fetchval(
            "SELECT count(*) FROM sms_attempts WHERE message_id = $1 AND dispatcher = $2 "
            "AND outcome = 'sent'", message_id, dispatcher)
        if not mine:
            return None
        async with httpx.AsyncClient() as c:
            text = (await c.get(url)).text
        finished = await counted_by_db(pool, dispatcher)
        shown = {outcome: sample(text, "amivono_sends_total", kind="sms", outcome=outcome)
                 for outcome in ("sent", "failed")}
        wanted = {outcome: float(finished.get(outcome, 0)) for outcome in ("sent", "failed")}
        return text if shown == wanted else None

    return await wait_for(agree, 30, what=f"{dispatcher}'s sends on {url}")


async def test_dispatcher_metrics_and_json_logs(client, auth, pool, sandbox):
    port = int(TEST_ENV["AMIVONO_API_PORT"]) + 3
    name = f"metered-{time.time_ns()}"
    proc = start_dispatcher(name, AMIVONO_METRICS_PORT=str(port))
    try:
        await wait_for(lambda: "sms: connected" in proc.log(), 15, what="dispatcher")
        created = (await client.post("/messages/sms", json=SMS, headers=auth)).json()
        text = await sends_match_attempts(f"http://127.0.0.1:{port}/metrics", pool, name,
                                          created["id"])
        sent = sample(text, "amivono_sends_total", kind="sms", outcome="sent")
        assert sent >= 1
        assert sample(text, "amivono_claim_to_send_seconds_count", kind="sms") >= sent
        assert "amivono_ari_reconnects_total" in text
        assert "amivono_calls_in_flight" in text
    finally:
        proc.stop()
    lines = [json.loads(line) for line in proc.log().splitlines() if line.startswith("{")]
    assert lines and all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)
    mine = [line for line in lines if line.get("message_id") == created["id"]]
    assert mine and mine[0]["kind"] == "sms" and "attempt_id" in mine[0]


async def test_run_serves_the_dispatchers_counters_on_the_api(db, pool, sandbox, new_key):
    """`amivono run` (API, dispatcher and FastAGI in one process) on ports of its
    own: the SMS it accepts and the send its dispatcher makes are both on its
    API's /metrics."""
    port = int(TEST_ENV["AMIVONO_API_PORT"]) + 57
    name = f"run-{os.getpid()}-{time.time_ns()}"
    proc = Proc(f"run-{SLOT}", "run", env={
        "AMIVONO_API_PORT": str(port), "AMIVONO_DISPATCHER_NAME": name,
        "AMIVONO_FASTAGI_PORT": str(int(TEST_ENV["AMIVONO_FASTAGI_PORT"]) + 57),
        "AMIVONO_METRICS_PORT": "0"})
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(base, proc)
        await wait_for(lambda: "sms: connected" in proc.log(), 15, what="its dispatcher")
        async with httpx.AsyncClient(base_url=base, timeout=20) as c:
            created = await c.post("/messages/sms", json=SMS,
                                   headers={"Authorization": f"Bearer {await new_key()}"})
            assert created.status_code == 201
        text = await sends_match_attempts(f"{base}/metrics", pool, name, created.json()["id"])
        assert sample(text, "amivono_sends_total", kind="sms", outcome="sent") >= 1
        assert sample(text, "amivono_messages_accepted_total", kind="sms") == 1
    finally:
        proc.stop()


def test_a_link_base_without_a_path_shadows_no_other_route():
    from starlette.routing import Match

    from service.http.app import create_app
    from service.http.sms_routes import open_link
    from service.settings import Settings

    app = create_app(Settings(link_base_url="https://amv.example"))

    def endpoint_for(path: str):
        scope = {"type": "http", "path": path, "method": "GET"}
        for route in app.router.routes:
            if route.matches(scope)[0] == Match.FULL:
                return route.endpoint
        return None

    for path in ("/healthz", "/readyz", "/metrics", "/docs"):
        assert endpoint_for(path) is not open_link, path
    assert endpoint_for("/AbCdEfGhIjK") is open_link
