"""Voice messages end to end: the called phone (the carrier simulator) really
hears the uploaded file, and every call ends in a truthful outcome."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest
import soundfile

from sandbox.carrier_logs import received_calls
from service.store.api_keys import hash_key

from .audio import analyse, tone
from .conftest import TEST_ENV, start_dispatcher, wait_for

FROM = "+46736265400"
CARRIER_ARI = f"http://127.0.0.1:{TEST_ENV['AMIVONO_CARRIER_HTTP_PORT']}/ari"
ARI_AUTH = ("amivono", "amivono-ari-secret")
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


def opus(freq: float, seconds: float, rate: int = 48000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    soundfile.write(buf, 0.5 * np.sin(2 * np.pi * freq * t), rate, format="OGG",
                    subtype="OPUS")
    return buf.getvalue()


async def test_an_opus_upload_is_accepted_and_plays(client, auth, carrier, caller):
    data = opus(1250, 1.2)
    assert data[:4] == b"OggS" and b"OpusHead" in data[:64]
    info = await upload(client, auth, "greeting.opus", data)
    assert (info["source_format"], info["source_rate"]) == ("OGG", 48000)
    assert info["duration"] == pytest.approx(1.2, abs=0.05)
    to = phone()
    done = await final(client, auth, (await call(client, auth, to, "greeting.opus"))["id"])
    assert done["outcome"] == "completed", done
    [heard_call] = await wait_for(lambda: calls_to(carrier, to), 5, what="carrier call log")
    heard = analyse(heard_call["recording"])
    assert heard.frequency == pytest.approx(1250, abs=3), heard
    assert heard.seconds == pytest.approx(1.2, abs=0.15), heard


async def test_voice_attempts_are_append_only(auth, pool):
    """A finished attempt is history: no UPDATE changes it, nor DELETE removes
    it (nor any attempt). An attempt in progress may be filled in."""
    account_id = await pool.fetchval("SELECT account_id FROM api_keys WHERE key_hash = $1",
                                     hash_key(auth["Authorization"].split(" ", 1)[1]))
    message_id = await pool.fetchval(
        "INSERT INTO voice_messages (account_id, from_number, to_number, file_name, "
        "outcome, canceled_at, finished_at) VALUES ($1, $2, $3, 'x.wav', 'canceled', now(), "
        "now()) RETURNING id", account_id, FROM, phone())  # final: nobody will call it
    open_id, done_id = [await pool.fetchval(
        "INSERT INTO voice_attempts (message_id, dispatcher) VALUES ($1, 'test') RETURNING id",
        message_id) for _ in range(2)]
    await pool.execute("UPDATE voice_attempts SET answered_at = clock_timestamp() WHERE id = $1",
                       done_id)
    await pool.execute("UPDATE voice_attempts SET finished_at = clock_timestamp(), "
                       "outcome = 'completed', detail = 'played' WHERE id = $1", done_id)
    finished = await pool.fetchrow("SELECT * FROM voice_attempts WHERE id = $1", done_id)
    try:
        for change in ("outcome = 'failed'", "detail = 'rewritten'", "cause_code = 17",
                       "finished_at = NULL, outcome = NULL", "answered_at = NULL"):
            with pytest.raises(asyncpg.RaiseError, match="already final"):
                await pool.execute(f"UPDATE voice_attempts SET {change} WHERE id = $1",
                                   done_id)
        for attempt_id in (done_id, open_id):
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await pool.execute("DELETE FROM voice_attempts WHERE id = $1", attempt_id)
        with pytest.raises(asyncpg.RaiseError):  # not its identity, even in progress
            await pool.execute("UPDATE voice_attempts SET dispatcher = 'other' WHERE id = $1",
                               open_id)
        assert await pool.fetchrow("SELECT * FROM voice_attempts WHERE id = $1",
                                   done_id) == finished
        assert await pool.fetchval("SELECT count(*) FROM voice_attempts WHERE message_id = $1",
                                   message_id) == 2
    finally:
        # Closed: later tests check that no attempt is left open.
        await pool.execute("UPDATE voice_attempts SET finished_at = clock_timestamp(), "
                           "outcome = 'canceled' WHERE id = $1 AND finished_at IS NULL",
                           open_id)


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


async def test_busy_is_retried_as_asked(client, auth, caller, pool):
    await upload(client, auth, "beep.wav", tone(700, 0.5))
    created = await call(client, auth, BUSY, "beep.wav", retries=2, retry_interval=1)
    assert created["retries"] == 2 and created["retry_interval"] == 1
    done = await final(client, auth, created["id"], timeout=30)
    assert done["outcome"] == "busy" and done["attempts_made"] == 3
    assert [a["outcome"] for a in done["attempts"]] == ["busy"] * 3
    # Each retry came retry_interval (1 minute of AMIVONO_MINUTE_SECONDS=1 s)
    # after the attempt before it ended, less a few ms (the retry is due 1 s
    # after the finishing statement began). From the database: the API's
    # times are whole seconds.
    times = await pool.fetch("SELECT started_at, finished_at FROM voice_attempts "
                             "WHERE message_id = $1 ORDER BY id", created["id"])
    gaps = [(later["started_at"] - earlier["finished_at"]).total_seconds()
            for earlier, later in itertools.pairwise(times)]
    assert len(gaps) == 2 and min(gaps) >= 0.95, gaps


async def test_cancel_while_ringing_hangs_up_at_the_carrier(client, auth, carrier, caller,
                                                           pool):
    """Our own `canceled` flag would call it canceled even if the phone rang
    on: the carrier's record shows the call really ended, hung up by us,
    before the 4 s dial timeout would have ended it."""
    caller_id = "+46736265431"  # this test's alone, to find its call at the carrier
    await upload(client, auth, "beep.wav", tone(700, 0.5))
    response = await client.post("/messages/voice", headers=auth, json={
        "from": caller_id, "to": NO_ANSWER, "file": "beep.wav"})
    assert response.status_code == 201, response.text
    created = response.json()
    async with httpx.AsyncClient(auth=ARI_AUTH) as ari:
        async def ringing() -> bool:
            channels = (await ari.get(f"{CARRIER_ARI}/channels")).json()
            return any(c["caller"]["number"] == caller_id for c in channels)
        await wait_for(ringing, 10, what="the phone ringing at the carrier")
    deleted_at = datetime.now(UTC)
    response = await client.delete(f"/messages/voice/{created['id']}", headers=auth)
    assert response.status_code == 200 and response.json()["status"] == "canceled"
    done = await final(client, auth, created["id"], timeout=10)
    assert done["outcome"] == "canceled" and done["answered_at"] is None
    assert [a["outcome"] for a in done["attempts"]] == ["canceled"]

    [rang] = await wait_for(lambda: [c for c in calls_to(carrier, NO_ANSWER)
                                     if c["from"] == caller_id], 5, what="the carrier's record")
    ended = datetime.fromisoformat(rang["time"])
    started = await pool.fetchval("SELECT started_at FROM voice_attempts WHERE message_id = $1",
                                  created["id"])
    assert not rang["answered"]
    # Ended after the DELETE, and before the dial timeout could have ended it
    # (it counts from the originate, which is after the attempt started).
    assert deleted_at < ended < started + timedelta(seconds=4), (deleted_at, ended, started)


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
        client, auth, carrier, gateway, caller):
    freqs = [400 + 60 * i for i in range(20)]
    for i, f in enumerate(freqs):
        await upload(client, auth, f"tone{i}.wav", tone(f, 1.5, rate=8000))
    numbers = [phone() for _ in freqs]
    console_log = gateway.dir / "log" / "messages.log"
    start = console_log.stat().st_size
    created = await asyncio.gather(*(
        call(client, auth, n, f"tone{i}.wav") for i, n in enumerate(numbers)))
    results = await asyncio.gather(*(final(client, auth, c["id"], 40) for c in created))
    assert [r["outcome"] for r in results] == ["completed"] * 20

    # Staff on the gateway console saw one line per call. The line is not
    # awaited before the originate: lines that come while the previous one is
    # on its way share the next "Setting global variable" line, joined by " | ".
    def console_lines() -> list[str]:
        with console_log.open() as f:
            f.seek(start)
            shown = [part for ln in f.read().splitlines() if "'AMIVONO_CALL' to '" in ln
                     for part in ln.split("'AMIVONO_CALL' to '", 1)[1].split(" | ")]
        ids = {f"voice message {c['id']} attempt" for c in created}
        return [part for part in shown if part.split(":")[0].rsplit(" ", 1)[0] in ids]

    lines = await wait_for(lambda: len(console_lines()) >= 20 and console_lines(), 5,
                           what="console lines")
    assert len(lines) == 20, lines
    for c, n, i in zip(created, numbers, range(20), strict=True):
        [line] = [ln for ln in lines if ln.startswith(f"voice message {c['id']} attempt")]
        assert f"calling {n} to play tone{i}.wav" in line, line
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
