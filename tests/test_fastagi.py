"""FastAGI: a phone calls the gateway and hears the voice message it was sent.
The call is placed from the carrier simulator, through the real trunk."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import time
from pathlib import Path, PurePosixPath

import httpx
import numpy as np
import pytest
import soundfile

from service.store.api_keys import hash_key

from .audio import analyse, similarity, tone
from .conftest import TEST_ENV, Proc, start_dispatcher, wait_for

CARRIER_ARI = f"http://127.0.0.1:{TEST_ENV['AMIVONO_CARRIER_HTTP_PORT']}/ari"
ARI_AUTH = ("amivono", "amivono-ari-secret")
FASTAGI_PORT = int(TEST_ENV["AMIVONO_FASTAGI_PORT"])
FROM = "+46736265400"

_numbers = iter(range(10**5))
_RUN = time.time_ns() % 1000


def phone() -> str:
    """A number no other test of this run has called or been sent a message."""
    return f"+467363{_RUN:03d}{next(_numbers):02d}"


@pytest.fixture(scope="module")
async def agi_and_dispatcher(db, sandbox):
    agi = Proc("fastagi", "fastagi")
    dispatcher = start_dispatcher(f"agi-{time.time_ns()}", AMIVONO_DIAL_TIMEOUT="4")
    await wait_for(lambda: "FastAGI listening" in agi.log(), 15, what="FastAGI up")
    await wait_for(lambda: "voice: connected" in dispatcher.log(), 15, what="dispatcher up")
    yield agi
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


async def deliver(client, headers, to: str, file: str) -> int:
    """Send `file` to `to` and wait until the call played it; its message id."""
    created = await client.post("/messages/voice", headers=headers,
                                json={"from": FROM, "to": to, "file": file})
    assert created.status_code == 201, created.text
    message_id = created.json()["id"]

    async def done() -> bool:
        body = (await client.get(f"/messages/voice/{message_id}", headers=headers)).json()
        assert body["outcome"] in (None, "completed"), body
        return body["outcome"] == "completed"
    await wait_for(done, 20, what=f"{file} delivered to {to}")
    return message_id


async def heard_at(pool, *ids: int) -> list[object]:
    rows = await pool.fetch("SELECT id, heard_at FROM voice_messages WHERE id = ANY($1::bigint[])",
                            list(ids))
    by_id = {r["id"]: r["heard_at"] for r in rows}
    return [by_id[i] for i in ids]


# --- what the gateway's "no messages" prompt sounds like --------------------

def asterisk_path(runtime, inner: str) -> Path:
    """`inner` as the gateway Asterisk sees it: an absolute symlink inside its
    root (Debian's sounds/en -> /etc/alternatives/...) points into the root."""
    done, todo = PurePosixPath("/"), list(PurePosixPath(inner).parts[1:])
    for _ in range(200):
        if not todo:
            return runtime.outside(str(done))
        part = todo.pop(0)
        here = runtime.outside(str(done / part))
        if part == "..":
            done = done.parent
        elif here.is_symlink():
            target = PurePosixPath(os.readlink(here))
            if target.is_absolute():
                done = PurePosixPath("/")
            todo = list(target.parts[1:] if target.is_absolute() else target.parts) + todo
        else:
            done = done / part
    raise AssertionError(f"symlink loop under {inner}")


def prompt_samples(gateway, name: str) -> np.ndarray:
    """One of Asterisk's core prompts, decoded, in the format it would play."""
    folder = asterisk_path(gateway.runtime, "/usr/share/asterisk/sounds/en")
    for ext, how in (("ulaw", {"format": "RAW", "subtype": "ULAW"}),
                     ("alaw", {"format": "RAW", "subtype": "ALAW"}),
                     ("gsm", {"format": "RAW", "subtype": "GSM610"}), ("wav", {})):
        path = folder / f"{name}.{ext}"
        if path.exists():
            raw = {"samplerate": 8000, "channels": 1} if how else {}
            samples, rate = soundfile.read(path, **how, **raw)
            assert rate == 8000, (path, rate)
            return samples
    raise AssertionError(f"prompt {name} not found in {folder}")


def share_at(samples: np.ndarray, freq: float, rate: int = 8000) -> float:
    """The part of the recording's energy within 20 Hz of `freq`."""
    spectrum = np.abs(np.fft.rfft(samples)) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    total = spectrum.sum()
    return float(spectrum[np.abs(freqs - freq) < 20].sum() / total) if total else 0.0


# --- tests ------------------------------------------------------------------

async def test_inbound_call_hears_the_latest_voice_message(
        client, auth, carrier, pool, agi_and_dispatcher):
    number = phone()
    await client.put("/files/old.wav", content=tone(600, 1.0), headers=auth)
    await client.put("/files/latest.wav", content=tone(900, 1.5), headers=auth)
    old_id = await deliver(client, auth, number, "old.wav")
    latest_id = await deliver(client, auth, number, "latest.wav")

    recording = await call_the_gateway(carrier, number)
    heard = analyse(recording)
    assert heard.frequency == pytest.approx(900, abs=3), heard
    assert heard.seconds == pytest.approx(1.5, abs=0.2), heard
    # The one played is marked heard, and only that one.
    old, latest = await heard_at(pool, old_id, latest_id)
    assert latest is not None and old is None


async def test_inbound_call_without_a_message_hears_the_no_messages_prompt(
        client, auth, carrier, gateway, pool, agi_and_dispatcher):
    # Another number has a message, distinctive and the newest of all: the
    # caller must not hear it (nor anything but the prompt).
    await client.put("/files/someone-else.wav", content=tone(1333, 1.0), headers=auth)
    other_id = await deliver(client, auth, phone(), "someone-else.wav")
    lonely = phone()
    heard_before = await pool.fetchval(
        "SELECT count(*) FROM voice_messages WHERE heard_at IS NOT NULL")

    samples, _ = soundfile.read(await call_the_gateway(carrier, lonely))
    # Nothing was marked heard: not the other number's message, nor any other.
    assert await heard_at(pool, other_id) == [None]
    assert await pool.fetchval(
        "SELECT count(*) FROM voice_messages WHERE heard_at IS NOT NULL") == heard_before
    # The recording is Asterisk's "no messages" (vm-no, vm-messages), sample for
    # sample after G.711, and nothing of the other number's 1333 Hz tone.
    prompt = np.concatenate([prompt_samples(gateway, p) for p in ("vm-no", "vm-messages")])
    assert similarity(samples, prompt) > 0.9
    assert share_at(samples, 1333) < 0.05
    assert analyse_seconds(samples) == pytest.approx(len(prompt) / 8000, abs=0.5)
    await wait_for(lambda: f"inbound call from {lonely}: no voice message to replay"
                   in agi_and_dispatcher.log(), 5, what="FastAGI's log line")


def analyse_seconds(samples: np.ndarray, threshold: float = 0.02) -> float:
    loud = np.where(np.abs(samples) > threshold)[0]
    return (loud[-1] - loud[0]) / 8000 if len(loud) else 0.0


def _local_addresses() -> set[str]:
    """This machine's own IPv4 and IPv6 addresses (from the kernel's tables)."""
    found: set[str] = set()
    lines = Path("/proc/net/fib_trie").read_text().splitlines()
    for previous, line in zip(lines, lines[1:], strict=False):
        if "/32 host LOCAL" in line:
            found.add(previous.split()[-1])
    if Path("/proc/net/if_inet6").exists():
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            raw = line.split()[0]
            found.add(str(ipaddress.IPv6Address(bytes.fromhex(raw))))
    return found


def _listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on TCP `port`."""
    found: set[str] = set()
    for table, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # The kernel prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, size, 4))
            found.add(str(ipaddress.ip_address(raw)))
    return found


async def test_fastagi_listens_on_loopback_only(agi_and_dispatcher):
    assert _listening_addresses(FASTAGI_PORT) == {"127.0.0.1"}
    with socket.create_connection(("127.0.0.1", FASTAGI_PORT), timeout=2):
        pass
    others = {a for a in _local_addresses()
              if not ipaddress.ip_address(a).is_loopback and not a.startswith("fe80:")}
    for address in sorted(others):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((address, FASTAGI_PORT), timeout=2).close()


async def test_replay_never_crosses_accounts(client, new_key, carrier, pool,
                                            agi_and_dispatcher):
    """latest_sent_to picks the newest message to the caller that was played,
    and its file from the sending account's namespace. Two accounts have a
    file of the same name; the newest message of all is account A's to
    another number, and A also has a newer message to the caller that never
    played. The caller hears only B's, in B's file."""
    keys = {who: await new_key(f"replay-{who}") for who in "AB"}
    headers = {who: {"Authorization": f"Bearer {k}"} for who, k in keys.items()}
    accounts = {who: await pool.fetchval("SELECT account_id FROM api_keys WHERE key_hash = $1",
                                         hash_key(k)) for who, k in keys.items()}
    for who, freq in (("A", 700), ("B", 1100)):
        response = await client.put("/files/notice.wav", content=tone(freq, 0.6),
                                    headers=headers[who])
        assert response.status_code == 201, response.text
    caller, elsewhere = phone(), phone()
    b_to_caller = await deliver(client, headers["B"], caller, "notice.wav")
    a_elsewhere = await deliver(client, headers["A"], elsewhere, "notice.wav")
    a_unplayed = await pool.fetchval(
        "INSERT INTO voice_messages (account_id, from_number, to_number, file_name, "
        "attempts_made, outcome, cause_code, finished_at) "
        "VALUES ($1, $2, $3, 'notice.wav', 1, 'busy', 17, now()) RETURNING id",
        accounts["A"], FROM, caller)  # A called too; the line was busy

    heard = analyse(await call_the_gateway(carrier, caller))
    assert heard.frequency == pytest.approx(1100, abs=3), heard
    assert heard.seconds == pytest.approx(0.6, abs=0.2), heard
    assert [t is not None for t in await heard_at(pool, b_to_caller, a_elsewhere, a_unplayed)] \
        == [True, False, False]

    heard = analyse(await call_the_gateway(carrier, elsewhere))
    assert heard.frequency == pytest.approx(700, abs=3), heard  # A's notice.wav, not B's
    assert (await heard_at(pool, a_elsewhere))[0] is not None


async def agi_session(headers: dict[str, str], timeout: float = 5.0) -> list[str]:
    """Play Asterisk's part of one FastAGI session over loopback: send the
    request's headers, answer every command with success; the commands."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", FASTAGI_PORT), timeout)
    commands: list[str] = []
    try:
        writer.write("".join(f"{k}: {v}\n" for k, v in headers.items()).encode() + b"\n")
        await writer.drain()
        while line := await asyncio.wait_for(reader.readline(), timeout):
            commands.append(line.decode().rstrip("\n"))
            writer.write(b"200 result=0\n")
            await writer.drain()
    finally:
        writer.close()
    return commands


async def test_a_connection_closed_before_its_request_does_not_stop_fastagi(
        agi_and_dispatcher):
    """A connection that ends before its headers do (a port probe, a call torn
    down at once) must not take the server down for every later call."""
    for partial in (b"", b"agi_network_script: replay\n"):
        _, writer = await asyncio.open_connection("127.0.0.1", FASTAGI_PORT)
        writer.write(partial)
        await writer.drain()
        writer.close()
    lonely = phone()
    commands = await agi_session({"agi_network_script": "replay", "agi_callerid": lonely[1:]})
    assert commands == [
        "ANSWER", f'EXEC Verbose "1,Amivono: no voice message for {lonely}"',
        'STREAM FILE vm-no ""', 'STREAM FILE vm-messages ""', "HANGUP"]
