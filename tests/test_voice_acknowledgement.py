"""Voice until acknowledged, end to end: text spoken at the far end, the
carrier's phones pressing keys (+46700000041 presses 1, +46700000043 presses
9, +46700000045 presses 1 from its second call on), calls repeated until one
is acknowledged, cancel and an Asterisk restart during the prompt, and an SMS
that escalates to such a call."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile
import soxr

from sandbox.carrier_logs import received_calls, received_sms

from .audio import loud_seconds, similarity, tone
from .conftest import LAUNCH, TEST_ENV, start_dispatcher, wait_for
from .test_audio_uploads import free_port
from .test_sms_clicks import PHONE_UA
from .test_voice import upload

PRESSES_1, PRESSES_9, SECOND_CALL = "+46700000041", "+46700000043", "+46700000045"
SPEECH = Path(TEST_ENV["AMIVONO_SOUNDS_DIR"]) / "speech"
ACK_SECONDS = 3
_callers = iter(range(10**6))
_phones = iter(range(500, 10**5))


def caller() -> str:
    """A fresh caller id per test: the carrier's special numbers are shared,
    and this is how a test finds its own calls to them."""
    return f"+4673{os.getpid() % 1000:03d}{next(_callers):04d}"


def phone() -> str:
    return f"+467363{next(_phones):05d}"


@pytest.fixture(scope="module")
async def acker(db, sandbox):
    proc = start_dispatcher(f"ack-{time.time_ns()}", AMIVONO_DIAL_TIMEOUT="4",
                            AMIVONO_CALLS_PER_SECOND="50",
                            AMIVONO_ACK_SECONDS=str(ACK_SECONDS))
    await wait_for(lambda: "voice: connected: sending" in proc.log(), 20, what="dispatcher")
    yield proc
    proc.stop()


async def voice(client, auth, expect: int = 201, **body: Any) -> dict[str, Any]:
    response = await client.post("/messages/voice", headers=auth, json=body)
    assert response.status_code == expect, response.text
    return dict(response.json())


async def get(client, auth, kind: str, message_id: int) -> dict[str, Any]:
    return dict((await client.get(f"/messages/{kind}/{message_id}", headers=auth)).json())


async def final(client, auth, message_id: int, timeout: float = 60) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        body = await get(client, auth, "voice", message_id)
        return body if body["outcome"] is not None else None
    return await wait_for(done, timeout, interval=0.2, what=f"voice {message_id} final")


async def prompting(client, auth, message_id: int) -> dict[str, Any]:
    async def started() -> dict[str, Any] | None:
        body = await get(client, auth, "voice", message_id)
        attempts = body["attempts"]
        return body if attempts and attempts[-1]["prompt_started_at"] else None
    return await wait_for(started, 30, interval=0.1, what="the prompt")


def calls_from(carrier, number: str, caller_id: str) -> list[dict[str, Any]]:
    return [c for c in received_calls(carrier) if c["to"] == number and c["from"] == caller_id]


async def recording(path: str) -> np.ndarray:
    """The carrier's recording once MixMonitor or Record has closed it (its
    size the same on two looks 0.3 s apart)."""
    sizes: list[int] = []

    def whole() -> list[np.ndarray] | None:
        try:
            sizes.append(os.path.getsize(path))
            if len(sizes) < 2 or sizes[-1] != sizes[-2] or sizes[-1] <= 44:
                return None
            samples, rate = soundfile.read(path)
        except (OSError, RuntimeError):
            return None
        assert rate == 8000
        return [np.asarray(samples)]
    [found] = await wait_for(whole, 10, interval=0.3, what=f"recording {path}")
    return found


def rendered(stem: str) -> np.ndarray:
    """Rendered speech as the gateway plays it on a G.711 u-law trunk."""
    samples, _ = soundfile.read(SPEECH / f"{stem}.ulaw", format="RAW", subtype="ULAW",
                                samplerate=8000, channels=1)
    return np.asarray(samples)


def spoken(text: str, language: str) -> np.ndarray:
    """The text rendered here, apart from the gateway: espeak-ng's own WAV,
    brought to 8 kHz u-law as a G.711 trunk carries it."""
    wav = subprocess.run(["espeak-ng", "-b", "1", "-v", language, "--stdout", "--stdin"],
                         input=text.encode(), capture_output=True, check=True).stdout
    samples, rate = soundfile.read(io.BytesIO(wav))
    narrow = soxr.resample(samples, rate, 8000, "HQ")
    buf = io.BytesIO()
    soundfile.write(buf, np.clip(narrow, -1, 1), 8000, format="RAW", subtype="ULAW")
    buf.seek(0)
    out, _ = soundfile.read(buf, format="RAW", subtype="ULAW", samplerate=8000, channels=1)
    return np.asarray(out)


async def stem_of(pool, message_id: int, column: str = "speech_stem") -> str:
    stem: str = await pool.fetchval(f"SELECT {column} FROM voice_messages WHERE id = $1",
                                    message_id)
    return stem


TEXTS = {
    "en": "Attention please. Fire alarm in the north building. Leave by the nearest exit.",
    "sv": "Observera. Brandlarm i norra huset. Gå ut genom närmaste utgång.",
}


async def test_text_is_heard_at_the_far_end_in_english_and_swedish(
        client, auth, carrier, acker, pool):
    heard: dict[str, np.ndarray] = {}
    reference: dict[str, np.ndarray] = {}
    for language, text in TEXTS.items():
        to = phone()
        created = await voice(client, auth, **{"from": caller(), "to": to, "text": text,
                                               "language": language})
        assert (created["file"], created["text"], created["language"]) == (
            None, text, language)
        done = await final(client, auth, created["id"])
        assert done["outcome"] == "completed", done
        [call] = await wait_for(lambda t=to: [c for c in received_calls(carrier)
                                              if c["to"] == t], 5, what="carrier call")
        heard[language] = await recording(call["recording"])
        reference[language] = await asyncio.to_thread(spoken, text, language)
    print()
    for language in TEXTS:
        other = "sv" if language == "en" else "en"
        ncc = similarity(heard[language], reference[language])
        unrelated = similarity(heard[other], reference[language])
        seconds, expected = loud_seconds(heard[language]), loud_seconds(reference[language])
        print(f"{language}: NCC recording vs the text rendered apart {ncc:.3f}, unrelated"
              f" recording ({other}) {unrelated:.3f}; speech {seconds:.3f} s heard,"
              f" {expected:.3f} s rendered")
        assert ncc > 0.9 and unrelated < 0.5, (ncc, unrelated)
        assert seconds == pytest.approx(expected, abs=0.3)
    # The languages render differently.
    assert abs(len(reference["en"]) - len(reference["sv"])) > 800 or similarity(
        reference["en"], reference["sv"][:len(reference["en"])]) < 0.5


async def test_the_same_words_render_once_and_each_language_its_own_way(client, auth, pool):
    words = "Hello, this is a test of the alarm."
    ids = [(await voice(client, auth, **{"from": caller(), "to": phone(), "text": words,
                                         "language": lang}))["id"] for lang in ("en", "en", "sv")]
    for message_id in ids:  # no call needed: nothing is left to call
        await client.delete(f"/messages/voice/{message_id}", headers=auth)
    en1, en2, sv = [await stem_of(pool, i) for i in ids]
    assert en1 == en2 and en1 != sv
    english, swedish = rendered(en1), rendered(sv)
    assert loud_seconds(english) > 1.0 and loud_seconds(swedish) > 1.0
    n = min(len(english), len(swedish))
    assert not np.allclose(english[:n], swedish[:n])


async def test_the_same_new_words_asked_for_at_once_are_all_201_and_rendered_whole(
        client, auth, pool):
    words = f"Water leak in room {time.time_ns() % 10**6}. Close the main valve."
    responses = await asyncio.gather(*(client.post("/messages/voice", headers=auth, json={
        "from": caller(), "to": phone(), "text": words}) for _ in range(6)))
    assert [r.status_code for r in responses] == [201] * 6, [r.text for r in responses]
    ids = [r.json()["id"] for r in responses]
    for message_id in ids:  # no call needed
        await client.delete(f"/messages/voice/{message_id}", headers=auth)
    [stem] = {await stem_of(pool, i) for i in ids}
    duration_ms = await pool.fetchval(
        "SELECT duration_ms FROM speech_renders WHERE stem = $1", stem)
    assert duration_ms > 1000
    # Whole files: as long as the speech rendered (to a millisecond's rounding).
    for ext, per_ms, size in (
            ("ulaw", 8, (SPEECH / f"{stem}.ulaw").stat().st_size),
            ("alaw", 8, (SPEECH / f"{stem}.alaw").stat().st_size),
            ("wav16", 16, soundfile.info(str(SPEECH / f"{stem}.wav16")).frames)):
        assert abs(size - duration_ms * per_ms) <= per_ms, (ext, size, duration_ms)
    assert [p.name for p in SPEECH.iterdir() if stem in p.name and p.suffix == ".tmp"] == []
    assert loud_seconds(rendered(stem)) > 1.0


async def test_41_acknowledges_the_first_call_and_no_other_call_is_placed(
        client, auth, carrier, gateway, acker, pool):
    me = caller()
    console = gateway.dir / "log" / "messages.log"
    start = console.stat().st_size
    created = await voice(client, auth, **{
        "from": me, "to": PRESSES_1, "text": "Server room temperature is critical.",
        "acknowledge": True, "repeat": 3, "repeat_interval": 1})
    assert created["acknowledge"] and created["repeat"] == 3 and not created["acknowledged"]
    done = await final(client, auth, created["id"])
    assert (done["status"], done["outcome"]) == ("acknowledged", "acknowledged"), done
    assert done["acknowledged"] and done["acknowledged_at"] and done["key"] == "1"
    assert done["calls_made"] == 1 and done["next_attempt_at"] is None
    [attempt] = done["attempts"]
    assert attempt["outcome"] == "acknowledged" and attempt["keys"] == "1"
    assert attempt["acknowledged_at"] and attempt["playback_started_at"]
    [call] = await wait_for(lambda: calls_from(carrier, PRESSES_1, me), 5, what="carrier")
    assert call["keys"] == "1" and call["answered"]
    cli = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "service", "carrier", "calls"], capture_output=True, text=True)
    shown = [json.loads(line) for line in cli.stdout.splitlines()]
    assert call in shown and call["recording"].endswith(".wav")
    # The confirmation was played after the key.
    heard = await recording(call["recording"])
    confirm = rendered(await stem_of(pool, created["id"], "confirm_stem"))
    ncc = similarity(heard, confirm)
    print(f"\nconfirmation NCC in the recording of {PRESSES_1}: {ncc:.3f}")
    assert ncc > 0.9
    # Repeats were 1 minute (1 s here) apart: three would have come by now.
    await asyncio.sleep(3)
    assert len(calls_from(carrier, PRESSES_1, me)) == 1
    assert await pool.fetchval("SELECT count(*) FROM voice_attempts WHERE message_id = $1",
                               created["id"]) == 1
    with console.open() as f:
        f.seek(start)
        lines = [ln for ln in f.read().splitlines()
                 if f"voice message {created['id']} attempt {attempt['id']}: acknowledged"
                 in ln]
    assert len(lines) == 1 and f"by {PRESSES_1} (key 1)" in lines[0]


async def test_43_never_acknowledges_and_is_called_exactly_repeat_times(
        client, auth, carrier, acker, pool):
    me = caller()
    created = await voice(client, auth, **{
        "from": me, "to": PRESSES_9, "text": "Flood warning.", "acknowledge": True,
        "repeat": 3, "repeat_interval": 1})
    done = await final(client, auth, created["id"], timeout=120)
    assert (done["status"], done["outcome"]) == ("completed", "completed"), done
    assert not done["acknowledged"] and done["acknowledged_at"] is None
    assert done["key"] == "9" and done["calls_made"] == 3
    assert [a["outcome"] for a in done["attempts"]] == ["completed"] * 3
    assert [a["keys"] for a in done["attempts"]] == ["9"] * 3
    times = await pool.fetch("SELECT started_at, finished_at FROM voice_attempts "
                             "WHERE message_id = $1 ORDER BY id", created["id"])
    gaps = [(b["started_at"] - a["finished_at"]).total_seconds()
            for a, b in itertools.pairwise(times)]
    print(f"\n{PRESSES_9}: gaps between calls {[round(g, 3) for g in gaps]} s"
          " (repeat_interval 1 minute = 1 s)")
    assert len(gaps) == 2 and all(0.95 <= g < 3.0 for g in gaps), gaps
    calls = await wait_for(lambda: len(c := calls_from(carrier, PRESSES_9, me)) == 3 and c,
                           5, what="three calls at the carrier")
    assert [c["keys"] for c in calls] == ["9"] * 3
    # After the 9 the prompt played once more, then the call listened
    # ACK_SECONDS: message + prompt twice + listening (+ ~0.5 s of set-up).
    message = loud_seconds(rendered(await stem_of(pool, created["id"])))
    prompt = len(rendered(await stem_of(pool, created["id"], "prompt_stem"))) / 8000
    least = len(rendered(await stem_of(pool, created["id"]))) / 8000 + 2 * prompt + ACK_SECONDS
    print(f"{PRESSES_9}: calls lasted {[c['duration'] for c in calls]} s; message + 2 prompts"
          f" + {ACK_SECONDS} s = {least:.2f} s")
    assert message > 0 and all(least - 0.3 < c["duration"] < least + 2.5 for c in calls)
    await asyncio.sleep(2)
    assert len(calls_from(carrier, PRESSES_9, me)) == 3


async def test_45_acknowledges_the_second_call(client, auth, carrier, acker):
    await asyncio.to_thread(carrier.cli, "database deltree carrier-calls")
    me = caller()
    created = await voice(client, auth, **{
        "from": me, "to": SECOND_CALL, "text": "Please call the duty officer.",
        "acknowledge": True, "repeat": 4, "repeat_interval": 1})
    done = await final(client, auth, created["id"], timeout=90)
    assert done["status"] == "acknowledged" and done["calls_made"] == 2, done
    assert [a["outcome"] for a in done["attempts"]] == ["completed", "acknowledged"]
    assert [a["keys"] for a in done["attempts"]] == ["", "1"]
    calls = await wait_for(lambda: len(c := calls_from(carrier, SECOND_CALL, me)) == 2 and c,
                           5, what="two calls at the carrier")
    assert [c["keys"] for c in calls] == ["", "1"]


async def test_cancel_during_the_prompt_hangs_up_at_the_carrier(client, auth, carrier, acker):
    to = phone()
    created = await voice(client, auth, **{"from": caller(), "to": to, "text": "Short.",
                                           "acknowledge": True, "repeat": 2})
    await prompting(client, auth, created["id"])
    canceled_at = datetime.now(UTC)
    response = await client.delete(f"/messages/voice/{created['id']}", headers=auth)
    assert response.status_code == 200 and response.json()["status"] == "canceled"
    done = await final(client, auth, created["id"], timeout=10)
    assert done["outcome"] == "canceled" and done["calls_made"] == 1
    [call] = await wait_for(lambda: [c for c in received_calls(carrier) if c["to"] == to],
                            5, what="the carrier's record")
    ended = datetime.fromisoformat(call["time"])
    # Hung up at once: the prompt and the listening after it would take seconds more.
    assert (ended - canceled_at).total_seconds() < 1.5, (ended, canceled_at)


async def test_gateway_restart_during_the_prompt_leaves_no_call_stuck(
        client, auth, gateway, acker, pool):
    created = await voice(client, auth, **{"from": caller(), "to": phone(),
                                           "text": "Gateway restart test.",
                                           "acknowledge": True, "repeat": 2,
                                           "repeat_interval": 1})
    await prompting(client, auth, created["id"])
    await asyncio.to_thread(gateway.stop)
    await asyncio.to_thread(gateway.start)
    done = await final(client, auth, created["id"], timeout=90)
    first, *refused, last = done["attempts"]
    assert first["outcome"] == "failed" and last["outcome"] == "completed", done
    # A call tried while Asterisk was still going down was never placed: it
    # counts neither as one of the two calls nor as an attempt made.
    assert all(a["outcome"] == "failed" and a["detail"].startswith("not placed")
               for a in refused), refused
    assert done["outcome"] == "completed" and not done["acknowledged"]
    assert done["calls_made"] == 2 and done["attempts_made"] == 2
    assert await pool.fetchval(
        "SELECT count(*) FROM voice_attempts WHERE finished_at IS NULL") == 0
    assert await pool.fetchval(
        "SELECT count(*) FROM voice_messages WHERE lease_attempt_id IS NOT NULL "
        "AND id = $1", created["id"]) == 0


async def test_an_sms_escalates_after_two_unclicked_sends_and_the_acknowledgement_ends_it(
        client, auth, carrier, acker, pool):
    me = caller()
    response = await client.post("/messages/sms", headers=auth, json={
        "from": me, "to": PRESSES_1, "message": "Alarm: boiler pressure high", "repeat": 10,
        "repeat_interval": 2, "escalate": {"after": 2, "text": "Boiler pressure is high."}})
    assert response.status_code == 201, response.text
    sms = response.json()
    assert sms["escalate"] == {"after": 2, "file": None, "text": "Boiler pressure is high.",
                               "language": "en"} and sms["escalated_to"] is None

    async def escalated() -> dict[str, Any] | None:
        body = await get(client, auth, "sms", sms["id"])
        return body if body["escalated_to"] else None
    body = await wait_for(escalated, 30, interval=0.2, what="the escalation")
    assert body["sent_count"] == 2
    done = await final(client, auth, body["escalated_to"])
    assert done["status"] == "acknowledged" and done["escalated_from"] == sms["id"], done
    assert done["acknowledge"] and done["to"] == PRESSES_1
    after = await get(client, auth, "sms", sms["id"])
    assert after["status"] == "acknowledged" and after["acknowledged_at"], after
    assert after["next_send_at"] is None and after["repeat"] == 0
    # Sends went on every 2 s while the call was made, and stopped with it.
    sent = after["sent_count"]
    assert 2 <= sent < 10
    await asyncio.sleep(4.5)  # two more sends would have come by now
    assert (await get(client, auth, "sms", sms["id"]))["sent_count"] == sent
    assert len([m for m in received_sms(carrier)
                if m["to"] == PRESSES_1 and m["from"] == me]) == sent
    assert len(calls_from(carrier, PRESSES_1, me)) == 1


async def test_a_click_ends_the_escalation_before_its_call(client, auth, carrier, acker):
    me = caller()
    response = await client.post("/messages/sms", headers=auth, json={
        "from": me, "to": PRESSES_1, "message": "Alarm", "repeat": 2, "repeat_interval": 30,
        "escalate": {"after": 1, "text": "Alarm.", "language": "sv"}})
    assert response.status_code == 201, response.text
    sms = response.json()

    async def escalated() -> dict[str, Any] | None:
        body = await get(client, auth, "sms", sms["id"])
        return body if body["escalated_to"] else None
    body = await wait_for(escalated, 30, interval=0.2, what="the escalation")
    queued = await get(client, auth, "voice", body["escalated_to"])
    assert queued["status"] == "queued" and queued["language"] == "sv"
    async with httpx.AsyncClient() as person:
        page = await person.get(sms["message"].rsplit(" ", 1)[1],
                                headers={"User-Agent": PHONE_UA})
        assert page.status_code == 200
    done = await final(client, auth, body["escalated_to"], timeout=5)
    assert done["status"] == "canceled" and done["calls_made"] == 0, done
    assert "clicked" in done["cause_text"]
    assert calls_from(carrier, PRESSES_1, me) == []


BAD = [
    ({"text": "x", "file": "a.wav"}, "text", "invalid"),
    ({}, "file", "missing_field"),
    ({"text": "x" * 1001}, "text", "too_long"),
    ({"text": "x", "language": "tlh"}, "language", "invalid"),
    ({"text": "x", "repeat": 2}, "repeat", "invalid"),
    ({"text": "x", "acknowledge": True, "repeat": 21}, "repeat", "out_of_range"),
    ({"text": "x", "acknowledge": True, "repeat": 2, "retries": 1}, "retries", "invalid"),
    ({"text": "x", "acknowledge_prompt": {"text": "press"}}, "acknowledge_prompt", "invalid"),
    ({"text": "x", "acknowledge": True, "acknowledge_prompt": {"file": "nope.wav"}},
     "acknowledge_prompt.file", "invalid"),
]


@pytest.mark.parametrize(("extra", "field", "code"), BAD)
async def test_bad_voice_requests_are_422(client, auth, extra, field, code):
    response = await client.post("/messages/voice", headers=auth, json={
        "from": caller(), "to": phone(), **extra})
    assert response.status_code == 422, response.text
    assert {"field": field, "code": code} in [
        {"field": e["field"], "code": e["code"]} for e in response.json()["errors"]]


@pytest.mark.parametrize(("escalate", "field", "code"), [
    ({"after": 0, "text": "x"}, "escalate.after", "out_of_range"),
    ({"after": 3, "text": "x"}, "escalate.after", "out_of_range"),  # repeat is 2
    ({"text": "x"}, "escalate.after", "missing_field"),
    ({"after": 1}, "escalate.file", "missing_field"),
    ({"after": 1, "file": "missing.wav"}, "escalate.file", "invalid"),
    ({"after": 1, "text": "x", "language": "xx"}, "escalate.language", "invalid"),
    ("call me", "escalate", "invalid"),
])
async def test_bad_escalations_are_422(client, auth, escalate, field, code):
    response = await client.post("/messages/sms", headers=auth, json={
        "from": caller(), "to": phone(), "message": "x", "repeat": 2, "escalate": escalate})
    assert response.status_code == 422, response.text
    assert {"field": field, "code": code} in [
        {"field": e["field"], "code": e["code"]} for e in response.json()["errors"]]


async def test_without_a_speech_engine_text_is_422_and_nothing_is_stored(db, auth, pool):
    port = free_port()
    proc = await LAUNCH.api("api-no-speech", port, env={
        "AMIVONO_SPEECH_ENGINE": "/nonexistent/espeak-ng"})
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            before = await pool.fetchval("SELECT count(*) FROM voice_messages")
            response = await c.post("/messages/voice", headers=auth, json={
                "from": caller(), "to": phone(), "text": "Hello"})
            assert response.status_code == 422, response.text
            [error] = response.json()["errors"]
            assert error["field"] == "text" and "not installed" in error["message"]
            assert await pool.fetchval("SELECT count(*) FROM voice_messages") == before
            # Rendered before the transaction now: the same 422s for an escalation.
            sms_before = await pool.fetchval("SELECT count(*) FROM sms_messages")
            for escalate, field in (({"after": 1, "text": "Alarm"}, "escalate.text"),
                                    ({"after": 1, "file": "x.wav"}, "escalate.language")):
                response = await c.post("/messages/sms", headers=auth, json={
                    "from": caller(), "to": phone(), "message": "Alarm", "repeat": 2,
                    "escalate": escalate})
                assert response.status_code == 422, response.text
                [error] = response.json()["errors"]
                assert error["field"] == field and "not installed" in error["message"], error
            assert await pool.fetchval("SELECT count(*) FROM sms_messages") == sms_before
    finally:
        await asyncio.to_thread(proc.stop)


async def test_speech_is_rendered_holding_no_database_connection(db, auth, tmp_path):
    """The engine may take long (up to 120 s): renders in progress must not
    hold pooled connections. Here a pool of 2 and two renders held back at the
    engine (a wrapper of espeak-ng that waits for a gate file): the API still
    answers, and both messages are created once the engine goes on."""
    gate = tmp_path / "go"
    engine = tmp_path / "held-espeak-ng"
    engine.write_text(f"""#!/bin/sh
case "$*" in *--version*) exec espeak-ng "$@";; esac
touch "{tmp_path}/started.$$"
i=0
while [ ! -e "{gate}" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
exec espeak-ng "$@"
""")
    engine.chmod(0o755)
    port = free_port()
    proc = await LAUNCH.api("api-held-speech", port, env={
        "AMIVONO_SPEECH_ENGINE": str(engine), "AMIVONO_DB_POOL_SIZE": "2"})
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=auth,
                                     timeout=90) as c:
            posts = [asyncio.create_task(c.post("/messages/voice", json={
                "from": caller(), "to": phone(),
                "text": f"Held words {n}, {time.time_ns()}."})) for n in range(2)]
            await wait_for(lambda: len(list(tmp_path.glob("started.*"))) >= 2, 30,
                           what="both renders at the engine")
            listed = await asyncio.wait_for(c.get("/messages/voice"), 10)
            assert listed.status_code == 200, listed.text
            gate.touch()
            created = [await p for p in posts]
            assert [r.status_code for r in created] == [201, 201], [r.text for r in created]
            for r in created:
                await c.delete(f"/messages/voice/{r.json()['id']}")
    finally:
        gate.touch()
        await asyncio.to_thread(proc.stop)


async def test_a_9_while_listening_plays_the_prompt_again_and_listens_in_full(
        client, auth, carrier, acker):
    """Short audio, so that +46700000043's 9 (3 s after answering) comes while
    the call listens after the first prompt. Every PlaybackFinished reaches
    the app twice: a second listening timer left running from the first
    prompt would end the second listening early."""
    await upload(client, auth, "short-message.wav", tone(500, 0.5))
    await upload(client, auth, "short-prompt.wav", tone(700, 0.5))
    me = caller()
    created = await voice(client, auth, **{
        "from": me, "to": PRESSES_9, "file": "short-message.wav", "acknowledge": True,
        "acknowledge_prompt": {"file": "short-prompt.wav"}})
    done = await final(client, auth, created["id"], timeout=60)
    assert (done["outcome"], done["calls_made"]) == ("completed", 1), done
    assert [a["keys"] for a in done["attempts"]] == ["9"]
    [call] = await wait_for(lambda: calls_from(carrier, PRESSES_9, me), 5, what="carrier")
    # The 9 at 3 s, the prompt once more (0.5 s), then ACK_SECONDS of listening.
    least = 3 + 0.5 + ACK_SECONDS
    print(f"\n{PRESSES_9} (9 while listening): the call lasted {call['duration']} s; "
          f"key + prompt + {ACK_SECONDS} s = {least:.2f} s")
    assert least - 0.3 < call["duration"] < least + 2.5, call


async def claim_one(conn, message_id: int) -> dict[str, Any] | None:
    """claim_due_calls as a dispatcher 'ack-crash' makes it, for this message
    only (first in line: due a year ago)."""
    from service.store.queries import queries

    await conn.execute("UPDATE voice_messages SET due_at = now() - interval '1 year' "
                       "WHERE id = $1 AND due_at IS NOT NULL", message_id)
    await queries.voice_messages.serialize_claims(conn)
    rows = await queries.voice_messages.claim_due_calls(
        conn, limit=1, gateways=["ack-crash"], caps=[1], fallback="ack-crash",
        dispatcher="ack-crash", lease_seconds=600.0)
    mine = [dict(r) for r in rows if r["id"] == message_id]
    assert len(mine) == 1, rows
    return mine[0]


async def uncommitted_message(conn, **columns: Any) -> int:
    """An acknowledge: true message inserted in the caller's transaction: no
    running dispatcher sees it, and the rollback leaves nothing behind."""
    names = ", ".join(columns)
    values = ", ".join(f"${i}" for i in range(2, len(columns) + 2))
    message_id: int = await conn.fetchval(
        "INSERT INTO voice_messages (account_id, from_number, to_number, file_name, "
        f"acknowledge, due_at, {names}) SELECT min(id), '+46736265400', $1, 'gone.wav', "
        f"true, now(), {values} FROM accounts RETURNING id", phone(), *columns.values())
    return message_id


async def test_an_acknowledged_message_is_not_called_again_after_its_dispatcher_died(pool):
    """The dispatcher died after the 1 (acknowledge written) and before it
    finished the call: its restart expires its leases, and the next claim
    must end the message acknowledged, not call again."""
    from service.store.queries import queries

    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            message_id = await uncommitted_message(conn, repeat_total=3, repeat_interval=1)
            first = await claim_one(conn, message_id)
            assert first is not None and first["attempt_id"] is not None
            await queries.voice_messages.mark_calls(conn, attempt_ids=[first["attempt_id"]],
                                                    marks=["answered"])
            assert await queries.voice_messages.acknowledge(conn,
                                                            attempt_id=first["attempt_id"])
            await queries.voice_messages.expire_own_leases(conn, dispatcher="ack-crash")
            again = await claim_one(conn, message_id)
            assert again is not None and again["attempt_id"] is None, again
            attempts = await conn.fetch("SELECT outcome, finished_at FROM voice_attempts "
                                        "WHERE message_id = $1", message_id)
            assert [a["outcome"] for a in attempts] == ["acknowledged"], attempts
            m = await conn.fetchrow("SELECT * FROM voice_message_view WHERE id = $1",
                                    message_id)
            assert (m["status"], m["outcome"]) == ("acknowledged", "acknowledged"), dict(m)
            assert m["finished_at"] is not None and m["due_at"] is None, dict(m)
            assert (m["attempts_made"], m["calls_made"]) == (1, 1), dict(m)
        finally:
            await tx.rollback()


async def test_an_acknowledgement_call_never_placed_is_tried_again(pool):
    """acknowledge: true without repeat (and every escalation's call) has no
    repeat_interval: a call not placed (placed false, retryable) is due
    again retry_interval later, not made final."""
    from service.store.queries import queries

    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            message_id = await uncommitted_message(conn, retry_interval=7)
            first = await claim_one(conn, message_id)
            assert first is not None and first["attempt_id"] is not None
            await queries.voice_messages.finish_calls(
                conn, attempt_ids=[first["attempt_id"]], outcomes=["failed"],
                cause_codes=[None], cause_texts=["gateway lost"],
                details=["originate timed out"], retryables=[True], placeds=[False],
                minute_seconds=60.0)
            m = await conn.fetchrow(
                "SELECT status, finished_at, calls_made, "
                "extract(epoch FROM due_at - now())::float8 AS due_in "
                "FROM voice_message_view WHERE id = $1", message_id)
            assert m["finished_at"] is None and m["status"] == "scheduled", dict(m)
            assert m["calls_made"] == 0 and abs(m["due_in"] - 7 * 60) < 5, dict(m)
        finally:
            await tx.rollback()
