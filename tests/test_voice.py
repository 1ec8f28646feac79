"""Voice messages end to end: the called phone (the carrier simulator) really
hears the uploaded file, and every call ends in a truthful outcome."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any

import pytest

from sandbox.carrier_logs import received_calls

from .audio import analyse, tone
from .conftest import start_dispatcher, wait_for

FROM = "+46736265400"
BUSY, NO_ANSWER, REJECT, NOWHERE = "+46700000017", "+46700000019", "+46700000021", "+46700000001"


@pytest.fixture(scope="module")
async def caller(db, sandbox):
    proc = start_dispatcher(f"voice-{time.time_ns()}", AMIVONO_DIAL_TIMEOUT="4",
                            AMIVONO_CALLS_PER_SECOND="50")
    await wait_for(lambda: "voice: connected: sending" in proc.log(), 20, what="dispatcher")
    yield proc
    proc.stop()


_numbers = iter(range(100, 10**6))


def phone() -> str:
    """A fresh ordinary number, so each test finds its own call at the carrier."""
    return f"+467362{next(_numbers):05d}"


async def upload(client, auth, name: str, data: bytes, expect: int = 201) -> dict[str, Any]:
    response = await client.put(f"/files/{name}", content=data, headers=auth)
    assert response.status_code == expect, response.text
    return response.json()


async def call(client, auth, to: str, file: str, **extra: Any) -> dict[str, Any]:
    response = await client.post("/messages/voice", headers=auth,
                                 json={"from": FROM, "to": to, "file": file, **extra})
    assert response.status_code == 201, response.text
    return response.json()


async def final(client, auth, message_id: int, timeout: float = 30) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        body = (await client.get(f"/messages/voice/{message_id}", headers=auth)).json()
        return body if body["outcome"] is not None else None
    return await wait_for(done, timeout, interval=0.1, what=f"voice {message_id} final")


async def wait_playing(client, auth, message_id: int) -> None:
    async def playing() -> bool:
        body = (await client.get(f"/messages/voice/{message_id}", headers=auth)).json()
        return body["sent_at"] is not None
    await wait_for(playing, 15, what="playback")


def calls_to(carrier, number: str) -> list[dict[str, Any]]:
    return [c for c in received_calls(carrier) if c["to"] == number]


@pytest.mark.parametrize("fmt", ["MP3", "WAV"])
async def test_the_far_end_hears_the_uploaded_tone(client, auth, carrier, gateway, caller, fmt):
    info = await upload(client, auth, f"tone-{fmt}.{fmt.lower()}", tone(1000, 2.0, fmt))
    assert info["duration"] == pytest.approx(2.0, abs=0.05)
    assert info["source_format"] == fmt and info["formats"] == ["ulaw", "alaw", "wav16"]
    to = phone()
    console_log = gateway.dir / "log" / "messages.log"
    start = console_log.stat().st_size
    created = await call(client, auth, to, info["name"])
    assert created["status"] == "queued" and created["sent_at"] is None
    assert created["url"].endswith(f"/messages/voice/{created['id']}")
    done = await final(client, auth, created["id"])
    assert done["status"] == done["outcome"] == "completed", done
    assert done["cause"] == 16 and done["answered_at"] and done["sent_at"] and done["ended_at"]
    assert done["duration"] == pytest.approx(2.0, abs=1.0)
    [attempt] = done["attempts"]
    assert attempt["outcome"] == "completed" and attempt["playback_started_at"]

    [heard_call] = await wait_for(lambda: calls_to(carrier, to), 5, what="carrier call log")
    assert heard_call["answered"] and heard_call["from"] == FROM
    cli = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "service", "carrier", "calls"], capture_output=True, text=True)
    assert json.dumps(heard_call) in cli.stdout.splitlines()
    heard = analyse(heard_call["recording"])
    assert heard.frequency == pytest.approx(1000, abs=3), heard
    assert heard.seconds == pytest.approx(2.0, abs=0.15), heard
    with console_log.open() as f:
        f.seek(start)
        lines = [ln for ln in f.read().splitlines()
                 if f"voice message {created['id']} attempt" in ln]
    assert lines and f"calling {to} to play {info['name']}" in lines[0]


@pytest.mark.parametrize(("number", "outcome", "cause"), [
    (BUSY, "busy", 17), (NO_ANSWER, "no-answer", 19), (REJECT, "rejected", 21),
    (NOWHERE, "failed", 1),
])
async def test_special_numbers_give_their_outcome_and_cause(
        client, auth, carrier, caller, number, outcome, cause):
    await upload(client, auth, "beep.wav", tone(700, 0.5))
    created = await call(client, auth, number, "beep.wav")
    done = await final(client, auth, created["id"])
    assert (done["status"], done["outcome"]) == (outcome, outcome)
    assert done["cause"] in ({cause, 0} if outcome == "no-answer" else {cause})
    assert done["cause_text"] and done["answered_at"] is None and done["sent_at"] is None
    assert [a["outcome"] for a in done["attempts"]] == [outcome]


async def test_busy_is_retried_as_asked(client, auth, caller):
    await upload(client, auth, "beep.wav", tone(700, 0.5))
    created = await call(client, auth, BUSY, "beep.wav", retries=2, retry_interval=1)
    assert created["retries"] == 2 and created["retry_interval"] == 1
    done = await final(client, auth, created["id"], timeout=30)
    assert done["outcome"] == "busy" and done["attempts_made"] == 3
    times = [a["started_at"] for a in done["attempts"]]
    assert len(times) == 3 and times == sorted(times)


async def test_cancel_while_ringing(client, auth, carrier, caller, pool):
    await upload(client, auth, "beep.wav", tone(700, 0.5))
    created = await call(client, auth, NO_ANSWER, "beep.wav")
    await wait_for(lambda: pool.fetchval(
        "SELECT count(*) FROM voice_attempts WHERE message_id = $1", created["id"]),
        10, what="call placed")
    await asyncio.sleep(0.5)  # ringing at the carrier
    response = await client.delete(f"/messages/voice/{created['id']}", headers=auth)
    assert response.status_code == 200 and response.json()["status"] == "canceled"
    done = await final(client, auth, created["id"], timeout=3)  # long before the 4 s timeout
    assert done["outcome"] == "canceled" and done["answered_at"] is None
    assert [a["outcome"] for a in done["attempts"]] == ["canceled"]


async def test_cancel_during_playback_hangs_up(client, auth, carrier, caller):
    await upload(client, auth, "long.wav", tone(500, 8.0))
    to = phone()
    created = await call(client, auth, to, "long.wav")

    await wait_playing(client, auth, created["id"])
    await asyncio.sleep(1.0)
    response = await client.delete(f"/messages/voice/{created['id']}", headers=auth)
    assert response.status_code == 200
    done = await final(client, auth, created["id"], timeout=5)
    assert done["outcome"] == "canceled" and done["sent_at"] is not None
    [heard_call] = await wait_for(lambda: calls_to(carrier, to), 5, what="carrier log")
    assert heard_call["duration"] < 5.0  # hung up, not the whole 8 s
    heard = analyse(heard_call["recording"])
    assert heard.frequency == pytest.approx(500, abs=3) and heard.seconds < 5.0


async def test_twenty_simultaneous_calls_all_complete_with_the_right_audio(
        client, auth, carrier, caller):
    freqs = [400 + 60 * i for i in range(20)]
    for i, f in enumerate(freqs):
        await upload(client, auth, f"tone{i}.wav", tone(f, 1.5, rate=8000))
    numbers = [phone() for _ in freqs]
    created = await asyncio.gather(*(
        call(client, auth, n, f"tone{i}.wav") for i, n in enumerate(numbers)))
    results = await asyncio.gather(*(final(client, auth, c["id"], 40) for c in created))
    assert [r["outcome"] for r in results] == ["completed"] * 20
    for number, freq in zip(numbers, freqs, strict=True):
        [heard_call] = await wait_for(lambda n=number: calls_to(carrier, n), 5, what="log")
        heard = analyse(heard_call["recording"])
        assert heard.frequency == pytest.approx(freq, abs=3), (number, freq, heard)
        assert heard.seconds == pytest.approx(1.5, abs=0.15)


async def test_gateway_crash_mid_call_finishes_every_attempt_and_retries(
        client, auth, carrier, gateway, caller, pool):
    """Asterisk killed outright: no events reach us; on reconnect the dispatcher
    finds the channel gone, ends the attempt, and the message retries."""
    await upload(client, auth, "long.wav", tone(500, 8.0))
    created = await call(client, auth, phone(), "long.wav", retries=1, retry_interval=1)

    await wait_playing(client, auth, created["id"])
    await asyncio.to_thread(gateway.kill)
    await asyncio.to_thread(gateway.start)
    done = await final(client, auth, created["id"], timeout=60)
    outcomes = [a["outcome"] for a in done["attempts"]]
    assert outcomes[0] == "failed" and "disappeared" in done["attempts"][0]["detail"]
    assert outcomes == ["failed", "completed"] and done["outcome"] == "completed"
    assert await pool.fetchval(
        "SELECT count(*) FROM voice_attempts WHERE finished_at IS NULL") == 0


async def test_gateway_restart_mid_call_without_retries_fails(
        client, auth, gateway, caller, pool):
    """A clean restart: Asterisk ends the call itself and tells us."""
    await upload(client, auth, "long.wav", tone(500, 8.0))
    created = await call(client, auth, phone(), "long.wav")

    await wait_playing(client, auth, created["id"])
    await asyncio.to_thread(gateway.stop)
    await asyncio.to_thread(gateway.start)
    done = await final(client, auth, created["id"], timeout=30)
    assert done["outcome"] == "failed" and done["attempts_made"] == 1
    assert "did not play to the end" in done["attempts"][0]["detail"]
    assert await pool.fetchval(
        "SELECT count(*) FROM voice_attempts WHERE finished_at IS NULL") == 0
