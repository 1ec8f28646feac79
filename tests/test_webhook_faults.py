"""Webhooks under faults and with their own dispatchers (so no other
dispatcher of the module takes their deliveries): SIGKILL of the delivery
worker mid-delivery, egress refused at delivery time, and calls."""

from __future__ import annotations

import secrets
import signal
import time
from typing import Any

from .audio import tone
from .conftest import start_dispatcher, wait_for
from .webhook_receiver import subscribe, types

FROM = "+46736265400"
BUSY = "+46700000017"


async def test_sigkill_of_the_delivery_worker_mid_delivery_loses_nothing(
        client, auth, db, sandbox, receiver):
    hook = await subscribe(client, auth, receiver.url, events=["sms.sent"])
    proc = start_dispatcher(f"hooks-kill-{time.time_ns()}")
    heir = None
    try:
        await wait_for(lambda: "sms: connected: sending" in proc.log(), 30, what="dispatcher")
        receiver.delay = 20.0  # the first delivery hangs until the worker is killed
        sms = (await client.post("/messages/sms", headers=auth, json={
            "from": FROM, "to": "+46736265449", "message": "kill me"})).json()
        await wait_for(lambda: receiver.requests, 20, what="the delivery in flight")
        proc.signal(signal.SIGKILL)
        proc.wait()
        receiver.delay = 0.0
        # The lease runs out (the total timeout plus a margin) and another takes it.
        heir = start_dispatcher(f"hooks-heir-{time.time_ns()}")
        await wait_for(lambda: len(receiver.requests) >= 2, 60, what="delivered again")
        events = receiver.events(hook["secret"])
        assert {e["webhook_id"] for e in events} == {events[0]["webhook_id"]}
        assert events[-1]["data"]["id"] == sms["id"]
    finally:
        proc.stop()
        if heir is not None:
            heir.stop()


async def test_private_addresses_are_refused_at_creation_and_at_delivery(
        client, auth, db, sandbox, receiver):
    for url in ("http://10.0.0.1/hook", "http://169.254.169.254/latest/meta-data",
                "http://[::1]:9/", "http://localhost.invalid/"):
        response = await client.post("/webhooks", json={"url": url}, headers=auth)
        assert response.status_code == 422, (url, response.text)
        assert response.json()["errors"][0]["field"] == "url"
    # Allowed by the API (127.0.0.0/8 in the tests) but not by this dispatcher.
    hook = await subscribe(client, auth, receiver.url)
    proc = start_dispatcher(f"hooks-strict-{time.time_ns()}",
                            AMIVONO_WEBHOOK_ALLOWED_NETWORKS="")
    try:
        await client.post(f"/webhooks/{hook['id']}/test", headers=auth)

        async def refused() -> Any:
            rows = (await client.get(f"/webhooks/{hook['id']}/deliveries", headers=auth)).json()
            return rows if rows and (rows[0]["last_error"] or "").startswith("refused") else None

        rows = await wait_for(refused, 20, what="refused at delivery")
        assert "127.0.0.1 is loopback" in rows[0]["last_error"]
        assert receiver.requests == []
    finally:
        proc.stop()


async def test_a_call_is_answered_and_completed_and_busy_fails(client, auth, carrier, receiver,
                                                               db, sandbox):
    proc = start_dispatcher(f"hooks-voice-{time.time_ns()}", AMIVONO_DIAL_TIMEOUT="4")
    try:
        await wait_for(lambda: "voice: connected: sending" in proc.log(), 20, what="dispatcher")
        hook = await subscribe(client, auth, receiver.url,
                               events=["voice.answered", "voice.completed", "voice.failed"])
        put = await client.put("/files/beep.wav", content=tone(700, 1.0), headers=auth)
        assert put.status_code == 201, put.text
        ok = (await client.post("/messages/voice", headers=auth, json={
            "from": FROM, "to": f"+4673626{secrets.randbelow(10**4):04d}",
            "file": "beep.wav"})).json()
        busy = (await client.post("/messages/voice", headers=auth, json={
            "from": FROM, "to": BUSY, "file": "beep.wav"})).json()
        await wait_for(lambda: types(receiver, hook["secret"], ok["id"]) == [
            "voice.answered", "voice.completed"], 30, what="answered, completed")
        await wait_for(lambda: types(receiver, hook["secret"], busy["id"]) == ["voice.failed"],
                       30, what="busy fails")
        failed = [e for e in receiver.events(hook["secret"]) if e["data"]["id"] == busy["id"]]
        assert failed[0]["data"]["outcome"] == "busy" and failed[0]["data"]["cause"] == 17
    finally:
        proc.stop()
