"""Health, readiness, Prometheus metrics and structured logs."""

from __future__ import annotations

import json
import time

import httpx

from .conftest import TEST_ENV, Proc, start_dispatcher, wait_for, wait_healthy

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


async def test_api_metrics_count_accepted_and_show_the_queue(client, auth):
    before = sample((await client.get("/metrics")).text, "amivono_messages_accepted_total",
                    kind="sms")
    key = {"Idempotency-Key": f"m-{time.time_ns()}"}
    for _ in range(2):  # the replay is not a second acceptance
        assert (await client.post("/messages/sms", json=SMS,
                                  headers={**auth, **key})).status_code == 201
    assert (await client.post("/messages/sms", json={"x": 1}, headers=auth)).status_code == 422
    page = await client.get("/metrics")
    assert page.headers["content-type"].startswith("text/plain")
    after = sample(page.text, "amivono_messages_accepted_total", kind="sms")
    assert after == before + 1
    assert "amivono_queue_depth{" in page.text


async def test_dispatcher_metrics_and_json_logs(client, auth, pool, sandbox):
    port = int(TEST_ENV["AMIVONO_API_PORT"]) + 3
    proc = start_dispatcher(f"metered-{time.time_ns()}", AMIVONO_METRICS_PORT=str(port))
    try:
        await wait_for(lambda: "sms: connected" in proc.log(), 15, what="dispatcher")
        created = (await client.post("/messages/sms", json=SMS, headers=auth)).json()

        async def sent() -> str | None:
            async with httpx.AsyncClient() as c:
                text = (await c.get(f"http://127.0.0.1:{port}/metrics")).text
            return text if sample(text, "amivono_sends_total", kind="sms",
                                  outcome="sent") >= 1 else None
        text = await wait_for(sent, 15, what="a send counted")
        assert sample(text, "amivono_claim_to_send_seconds_count", kind="sms") >= 1
        assert "amivono_ari_reconnects_total" in text
        assert "amivono_calls_in_flight" in text
    finally:
        proc.stop()
    lines = [json.loads(line) for line in proc.log().splitlines() if line.startswith("{")]
    assert lines and all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)
    mine = [line for line in lines if line.get("message_id") == created["id"]]
    assert mine and mine[0]["kind"] == "sms" and "attempt_id" in mine[0]


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
