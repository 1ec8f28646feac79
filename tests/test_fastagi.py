"""FastAGI: a phone calls the gateway and hears the voice message it was sent.
The call is placed from the carrier simulator, through the real trunk."""

from __future__ import annotations

import time

import httpx
import pytest

from .audio import analyse, tone
from .conftest import TEST_ENV, Proc, start_dispatcher, wait_for

CARRIER_ARI = f"http://127.0.0.1:{TEST_ENV['AMIVONO_CARRIER_HTTP_PORT']}/ari"
ARI_AUTH = ("amivono", "amivono-ari-secret")


@pytest.fixture(scope="module")
async def agi_and_dispatcher(db, sandbox):
    agi = Proc("fastagi", "fastagi")
    dispatcher = start_dispatcher(f"agi-{time.time_ns()}", AMIVONO_DIAL_TIMEOUT="4")
    await wait_for(lambda: "FastAGI listening" in agi.log(), 15, what="FastAGI up")
    await wait_for(lambda: "voice: connected" in dispatcher.log(), 15, what="dispatcher up")
    yield
    agi.stop()
    dispatcher.stop()


async def call_the_gateway(carrier, caller_id: str) -> str:
    """Originate from the carrier to the gateway; return the recording's path."""
    inner = f"{carrier.inner_dir}/recordings/inbound-{time.time_ns()}.wav"
    async with httpx.AsyncClient(auth=ARI_AUTH) as ari:
        response = await ari.post(f"{CARRIER_ARI}/channels", params={
            "endpoint": "PJSIP/+46812345678@gateway", "context": "carrier-listen",
            "extension": "s", "priority": 1, "callerId": caller_id, "timeout": 10,
        }, json={"variables": {"REC": inner}})
        assert response.status_code == 200, response.text
        channel = response.json()["id"]

        async def gone() -> bool:
            return (await ari.get(f"{CARRIER_ARI}/channels/{channel}")).status_code == 404
        await wait_for(gone, 20, interval=0.2, what="inbound call to end")
    return str(carrier.runtime.outside(inner))


async def test_inbound_call_hears_the_latest_voice_message(
        client, auth, carrier, pool, agi_and_dispatcher):
    number = f"+467362{time.time_ns() % 100000:05d}"
    await client.put("/files/old.wav", content=tone(600, 1.0), headers=auth)
    await client.put("/files/latest.wav", content=tone(900, 1.5), headers=auth)
    for name in ("old.wav", "latest.wav"):
        created = await client.post("/messages/voice", headers=auth, json={
            "from": "+46736265400", "to": number, "file": name})
        message_id = created.json()["id"]

        async def done(message_id=message_id) -> bool:
            body = (await client.get(f"/messages/voice/{message_id}", headers=auth)).json()
            return body["outcome"] == "completed"
        await wait_for(done, 20, what=f"{name} delivered")

    recording = await call_the_gateway(carrier, number)
    heard = analyse(recording)
    assert heard.frequency == pytest.approx(900, abs=3), heard
    assert heard.seconds == pytest.approx(1.5, abs=0.2), heard
    latest = (await client.get(f"/messages/voice/{message_id}", headers=auth)).json()
    assert latest["heard_at"] is not None


async def test_inbound_call_without_a_message_hears_a_short_prompt(carrier, pool,
                                                                   agi_and_dispatcher):
    number = "+46736299999"
    recording = await call_the_gateway(carrier, number)
    heard = analyse(recording, threshold=0.02)
    assert 0.3 < heard.seconds < 5.0  # "no messages", then the gateway hangs up
    assert await pool.fetchval(
        "SELECT count(*) FROM voice_messages WHERE to_number = $1 AND heard_at IS NOT NULL",
        number) == 0
