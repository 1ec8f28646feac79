"""The voice dispatcher's own guarantees, each against the real Asterisks: which
outcomes are retried, a call placed once however often its originate is
sent, a file replaced while the call rings, and the timers that end an
attempt when ARI's events never come.

The dispatcher here talks to the gateway's ARI through a proxy of ours
(AriProxy), which can hold an originate until the test lets it go and cut
the event WebSocket while REST keeps working."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.carrier_logs import received_calls
from service.delivery.voice_calls import channel_id_for
from service.store.api_keys import hash_key
from service.telephony.ari import AriClient, AriError

from .audio import analyse, tone
from .conftest import TEST_ENV, start_dispatcher, wait_for

FROM = "+46736265400"
NO_ANSWER, REJECT, NOWHERE = "+46700000019", "+46700000021", "+46700000001"
ARI_PORT = int(TEST_ENV["AMIVONO_HTTP_PORT"])
ARI_URL = TEST_ENV["AMIVONO_ARI_URL"]
ARI_AUTH = ("amivono", "amivono-ari-secret")
DIAL_TIMEOUT = 1

_numbers = iter(range(10**5))
_RUN = time.time_ns() % 1000


def phone() -> str:
    """An ordinary number (it answers) no other test has called."""
    return f"+467366{_RUN:03d}{next(_numbers):02d}"


class AriProxy:
    """A TCP proxy in front of the gateway's ARI that reads the HTTP requests
    going through it. `hold_originates()` keeps each `POST /ari/channels`
    (an originate) until `release()`; `hold_next_play()` keeps the next
    `POST /ari/channels/<id>/play` until `release_play()`; `cut_events()`
    closes the event WebSockets and refuses new ones until
    `restore_events()`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.held = asyncio.Event()       # an originate is being held
        self._gate = asyncio.Event()
        self._gate.set()
        self._events_cut = False
        self.play_held = asyncio.Event()  # a play is being held
        self._hold_play = False
        self._play_gate = asyncio.Event()
        self._play_gate.set()
        self._sockets: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def hold_originates(self) -> None:
        self.held.clear()
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def hold_next_play(self) -> None:
        self.play_held.clear()
        self._play_gate.clear()
        self._hold_play = True

    def release_play(self) -> None:
        self._hold_play = False
        self._play_gate.set()

    def cut_events(self) -> None:
        self._events_cut = True
        for writer in list(self._sockets):
            writer.transport.abort()

    def restore_events(self) -> None:
        self._events_cut = False

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_writer = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            websocket = b"upgrade: websocket" in head.lower()
            if websocket and self._events_cut:
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            if websocket:
                self._sockets.update((writer, up_writer))
                up_writer.write(head)
                await asyncio.gather(self._pump(reader, up_writer),
                                     self._pump(up_reader, writer))
            else:
                await asyncio.gather(self._requests(head, reader, up_writer),
                                     self._pump(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    self._sockets.discard(w)
                    w.close()
            self._tasks.discard(task)

    async def _requests(self, head: bytes, reader: asyncio.StreamReader,
                        up_writer: asyncio.StreamWriter) -> None:
        """Forward HTTP requests one by one (keep-alive), holding originates."""
        while True:
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else b""
            if head.startswith(b"POST /ari/channels?") and not self._gate.is_set():
                self.held.set()
                await self._gate.wait()
            request_line = head.split(b"\r\n", 1)[0]
            if (self._hold_play and request_line.startswith(b"POST /ari/channels/")
                    and b"/play" in request_line):
                self._hold_play = False  # this one only
                self.play_held.set()
                await self._play_gate.wait()
            up_writer.write(head + body)
            await up_writer.drain()
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                up_writer.close()
                return

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
        dst.close()


@pytest.fixture(scope="module")
async def proxied(db, sandbox):
    """A dispatcher (short dial timeout) whose ARI goes through an AriProxy."""
    proxy = AriProxy(ARI_PORT)
    port = await proxy.start()
    proc = start_dispatcher(f"proxied-{time.time_ns()}",
                            AMIVONO_ARI_URL=ARI_URL.replace(str(ARI_PORT), str(port)),
                            AMIVONO_DIAL_TIMEOUT=str(DIAL_TIMEOUT), AMIVONO_CALLS_PER_SECOND="50")
    try:
        await wait_for(lambda: "voice: connected: sending" in proc.log(), 20, what="dispatcher")
        yield proxy, proc
    finally:
        proxy.release()
        proxy.release_play()
        proxy.restore_events()
        # In a thread: the proxy (this loop) must serve the dispatcher's last requests.
        await asyncio.to_thread(proc.stop)
        await proxy.close()


async def upload(client, auth, name: str, data: bytes) -> dict[str, Any]:
    response = await client.put(f"/files/{name}", content=data, headers=auth)
    assert response.status_code in (200, 201), response.text
    return response.json()


async def call(client, auth, to: str, file: str, **extra: Any) -> dict[str, Any]:
    response = await client.post("/messages/voice", headers=auth,
                                 json={"from": FROM, "to": to, "file": file, **extra})
    assert response.status_code == 201, response.text
    return response.json()


async def final(client, auth, message_id: int, timeout: float = 30) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        body = (await client.get(f"/messages/voice/{message_id}", headers=auth)).json()
        return body if body["outcome"] is not None else None  # null until final
    return await wait_for(done, timeout, interval=0.1, what=f"voice {message_id} final")


# --- retries ----------------------------------------------------------------

async def attempt_times(pool, message_id: int) -> list[Any]:
    """The attempts' times to the microsecond (the API gives whole seconds)."""
    return await pool.fetch("SELECT started_at, finished_at FROM voice_attempts "
                            "WHERE message_id = $1 ORDER BY id", message_id)


async def test_no_answer_is_retried_after_the_interval(client, auth, pool, proxied):
    await upload(client, auth, "beep.wav", tone(700, 0.5))
    created = await call(client, auth, NO_ANSWER, "beep.wav", retries=1, retry_interval=1)
    done = await final(client, auth, created["id"])
    assert done["outcome"] == "no-answer" and done["attempts_made"] == 2, done
    first, second = done["attempts"]
    assert first["outcome"] == second["outcome"] == "no-answer"
    assert first["cause"] in (19, 0) and "our timer" not in first["detail"]
    # retry_interval is 1 minute of AMIVONO_MINUTE_SECONDS=1 s (less a few ms:
    # the retry is due 1 s after the finishing statement began).
    before, after = await attempt_times(pool, created["id"])
    gap = (after["started_at"] - before["finished_at"]).total_seconds()
    assert gap >= 0.95, (gap, done["attempts"])


@pytest.mark.parametrize(("number", "outcome", "cause"), [
    (REJECT, "rejected", 21), (NOWHERE, "failed", 1)])
async def test_rejected_and_unallocated_are_not_retried(client, auth, proxied, number,
                                                       outcome, cause):
    await upload(client, auth, "beep.wav", tone(700, 0.5))
    created = await call(client, auth, number, "beep.wav", retries=2, retry_interval=1)
    done = await final(client, auth, created["id"])
    # Final after one attempt: nothing is due any more, so nothing will follow.
    assert (done["status"], done["outcome"], done["cause"]) == (outcome, outcome, cause), done
    assert done["attempts_made"] == 1 and done["next_attempt_at"] is None
    assert [a["outcome"] for a in done["attempts"]] == [outcome]


# --- a file replaced while the call rings -----------------------------------

def stem_files(settings, account_id: int, stem: str) -> list[Path]:
    folder = Path(settings.sounds_dir) / str(account_id)
    return sorted(folder.glob(f"{stem}.*"))


async def test_a_file_replaced_while_the_call_rings_plays_the_new_audio(
        client, auth, carrier, pool, settings, proxied):
    proxy, _ = proxied
    await upload(client, auth, "swap.wav", tone(600, 1.0))
    before = await pool.fetchrow(
        "SELECT f.account_id, f.stem FROM sound_files f JOIN api_keys k USING (account_id) "
        "WHERE k.key_hash = $1 AND f.name = 'swap.wav'",
        hash_key(auth["Authorization"].split(" ", 1)[1]))
    to = phone()
    proxy.hold_originates()
    try:
        created = await call(client, auth, to, "swap.wav")
        # Claimed (the old audio was current then) and on its way to Asterisk.
        await asyncio.wait_for(proxy.held.wait(), 10)
        replaced = await client.put("/files/swap.wav", content=tone(1400, 1.2), headers=auth)
        assert replaced.status_code == 200, replaced.text
        assert stem_files(settings, before["account_id"], before["stem"]) == []  # old gone
    finally:
        proxy.release()
    done = await final(client, auth, created["id"])
    assert done["outcome"] == "completed", done
    assert [a["outcome"] for a in done["attempts"]] == ["completed"]
    [heard_call] = await wait_for(lambda: [c for c in received_calls(carrier) if c["to"] == to],
                                  5, what="carrier log")
    heard = analyse(heard_call["recording"])
    assert heard.frequency == pytest.approx(1400, abs=3), heard
    assert heard.seconds == pytest.approx(1.2, abs=0.15), heard


async def test_a_call_waiting_on_ari_does_not_hold_up_another_calls_events(
        client, auth, carrier, proxied):
    """One call's answer waits on its play request (held by the proxy);
    another call placed meanwhile is answered, plays and ends all the same:
    each call's events are handled apart from the others'."""
    proxy, _ = proxied
    await upload(client, auth, "apart.wav", tone(700, 1.0))
    first_to, second_to = phone(), phone()
    proxy.hold_next_play()
    try:
        first = await call(client, auth, first_to, "apart.wav")
        # Answered, and its StasisStart's handling waits on the held play.
        await asyncio.wait_for(proxy.play_held.wait(), 15)
        second = await call(client, auth, second_to, "apart.wav")
        # Well within ARI's 10 s request timeout, which would end the hold.
        done = await final(client, auth, second["id"], timeout=8)
        assert done["outcome"] == "completed", done
        body = (await client.get(f"/messages/voice/{first['id']}", headers=auth)).json()
        assert body["outcome"] is None and body["sent_at"] is None, body  # still held
    finally:
        proxy.release_play()
    done = await final(client, auth, first["id"])
    assert done["outcome"] == "completed", done
    [heard] = await wait_for(lambda: [c for c in received_calls(carrier)
                                      if c["to"] == first_to], 5, what="carrier log")
    assert analyse(heard["recording"]).frequency == pytest.approx(700, abs=3)


# --- when ARI's events never come -------------------------------------------

async def test_our_timers_end_a_ringing_call_whose_events_never_come(
        client, auth, pool, proxied):
    """The event WebSocket is cut while the call rings and stays down: the
    ChannelDestroyed of the dial timeout never reaches the dispatcher. Its
    own timer (dial timeout + 10 s, then 5 s of grace after the hangup)
    ends the attempt as no-answer, and says so."""
    proxy, proc = proxied
    await upload(client, auth, "beep.wav", tone(700, 0.5))
    created = await call(client, auth, NO_ANSWER, "beep.wav")
    attempt_id = await wait_for(lambda: pool.fetchval(
        "SELECT id FROM voice_attempts WHERE message_id = $1", created["id"]), 10,
        what="claimed")
    channel = channel_id_for(attempt_id)
    async with httpx.AsyncClient(auth=ARI_AUTH) as ari:
        async def ringing() -> bool:
            return (await ari.get(f"{ARI_URL}/channels/{channel}")).status_code == 200
        await wait_for(ringing, 10, what="the call ringing")
        try:
            proxy.cut_events()
            await wait_for(lambda: "voice: disconnected" in proc.log(), 10,
                           what="the dispatcher to notice")
            done = await final(client, auth, created["id"], timeout=DIAL_TIMEOUT + 10 + 5 + 15)
            # It ended without any event: the dispatcher never reconnected.
            assert "voice: connected: sending" not in proc.log().split("voice: disconnected")[-1]
        finally:
            proxy.restore_events()
        assert (await ari.get(f"{ARI_URL}/channels/{channel}")).status_code == 404
    [attempt] = done["attempts"]
    assert attempt["outcome"] == "no-answer", attempt
    assert attempt["detail"] == f"no answer within {DIAL_TIMEOUT + 10:g} s (our timer)"
    [times] = await attempt_times(pool, created["id"])
    took = (times["finished_at"] - times["started_at"]).total_seconds()
    # Not before the ring timer, and the grace after the hangup is 5 s.
    assert DIAL_TIMEOUT + 10 <= took <= DIAL_TIMEOUT + 10 + 5 + 5, took


# --- one call per attempt ---------------------------------------------------

async def test_a_repeated_originate_places_no_second_call(carrier, gateway, proxied):
    """The channelId is the attempt's: Asterisk refuses a second originate
    with it (409) and the phone rings once. Ids are fixed width, so one
    attempt's id is never a prefix of another's (Asterisk would take
    amivono-call-1 for amivono-call-10 and refuse it).

    Last in this module: Asterisk 22 leaks a channel on the refused
    originate ("Channel Unique ID ... already in use"), and a later
    `core stop now` then waits about 15 s for it; the gateway is killed and
    started afresh instead (2 s)."""
    app = f"amivono-dup-{time.time_ns()}"
    ari = AriClient(ARI_URL, *ARI_AUTH, app=app)
    events: list[dict[str, Any]] = []

    async def on_event(event: dict[str, Any]) -> None:
        events.append(event)

    stop = asyncio.Event()
    running = asyncio.create_task(ari.run_events(on_event, stop))
    twice, ten, one = phone(), phone(), phone()
    base = 9_000_000_000 + time.time_ns() % 10**8
    ids = {twice: channel_id_for(base * 10 + 7), ten: channel_id_for(base * 10),
           one: channel_id_for(base)}
    try:
        await asyncio.wait_for(ari.connected.wait(), 10)

        async def originate(number: str) -> str | int:
            """The new channel's id, or the status Asterisk refused it with."""
            try:
                made = await ari.originate(endpoint=f"PJSIP/{number}@carrier",
                                           channel_id=ids[number], caller_id=FROM,
                                           timeout=5, app_args="voice")
            except AriError as exc:
                return exc.status or 0
            return str(made["id"])

        # Sent twice, as a retried originate would be; then amivono-call-<base*10>
        # exists when amivono-call-<base> is sent, its own call.
        results = [await originate(n) for n in (twice, twice, ten, one)]
        placed = [r for r in results if isinstance(r, str)]

        def answered() -> set[str]:
            return {e["channel"]["id"] for e in events if e["type"] == "StasisStart"}
        await wait_for(lambda: answered() >= set(placed), 10, what="the calls answered")
        for channel_id in answered():
            await ari.hangup(channel_id)

        def calls() -> dict[str, int]:
            got = [c["to"] for c in received_calls(carrier)]
            return {n: got.count(n) for n in ids}
        await wait_for(lambda: sum(calls().values()) >= len(answered()), 10,
                       what="the carrier's records")
        assert calls() == {twice: 1, ten: 1, one: 1}  # the phone rang once
        assert results == [ids[twice], 409, ids[ten], ids[one]]
    finally:
        stop.set()
        await running
        await ari.close()
        await asyncio.to_thread(gateway.kill)
        await asyncio.to_thread(gateway.start)
