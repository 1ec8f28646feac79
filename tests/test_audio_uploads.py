"""Sound file limits, against an API of its own with small ones:
AMIVONO_MAX_SOUND_SECONDS (a longer sound is 422),
AMIVONO_MAX_UPLOAD_BYTES (a bigger upload is 413, however it is sent),
AMIVONO_MAX_SOUND_RATE and _CHANNELS (422 from the header, before decoding)
and AMIVONO_MAX_CONCURRENT_UPLOADS (one more is 503 with Retry-After)."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import soundfile

from service.domain.refusals import Refused
from service.store import sound_files

from .audio import tone
from .conftest import LAUNCH

MAX_SECONDS = 2
MAX_BYTES = 100_000
MAX_RATE = 48000
MAX_CHANNELS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
async def small_api(db) -> AsyncIterator[str]:
    port = free_port()
    proc = await LAUNCH.api("api-small-limits", port, env={
        "AMIVONO_MAX_SOUND_SECONDS": str(MAX_SECONDS),
        "AMIVONO_MAX_UPLOAD_BYTES": str(MAX_BYTES),
        "AMIVONO_MAX_SOUND_RATE": str(MAX_RATE),
        "AMIVONO_MAX_SOUND_CHANNELS": str(MAX_CHANNELS),
        "AMIVONO_MAX_CONCURRENT_UPLOADS": "1"})
    yield f"http://127.0.0.1:{port}"
    await asyncio.to_thread(proc.stop)


@pytest.fixture
async def small(small_api, auth) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=small_api, headers=auth, timeout=20) as c:
        yield c


@pytest.mark.parametrize("fmt", ["WAV", "MP3", "FLAC"])
async def test_a_sound_longer_than_the_limit_is_422(small, fmt):
    name = f"long.{fmt.lower()}"
    too_long = tone(440, MAX_SECONDS + 0.5, fmt, rate=8000)
    assert len(too_long) < MAX_BYTES  # refused for its length, not its size
    response = await small.put(f"/files/{name}", content=too_long)
    assert response.status_code == 422, response.text
    assert f"longer than {MAX_SECONDS} seconds" in response.json()["message"]
    assert (await small.get(f"/files/{name}")).status_code == 404
    within = await small.put(f"/files/{name}", content=tone(440, MAX_SECONDS - 0.2, fmt, rate=8000))
    assert within.status_code == 201, within.text


async def test_an_upload_over_the_byte_limit_is_413_with_a_length(small):
    # Short audio (0.6 s), but 115 KB of it: the bytes are what is over.
    big = tone(440, 0.6, rate=48000, channels=2)
    assert len(big) > MAX_BYTES
    response = await small.put("/files/big.wav", content=big)
    assert response.status_code == 413, response.text
    assert str(MAX_BYTES) in response.json()["message"]
    assert (await small.get("/files/big.wav")).status_code == 404
    fits = tone(440, 0.5, rate=48000, channels=2)
    assert len(fits) <= MAX_BYTES
    assert (await small.put("/files/big.wav", content=fits)).status_code == 201


async def test_an_upload_over_the_byte_limit_is_413_when_streamed(small):
    """Chunked, with no Content-Length: refused once the bytes pass the limit."""
    big = tone(440, 0.6, rate=48000, channels=2)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 8192):
            yield big[i:i + 8192]

    response = await small.put("/files/streamed.wav", content=chunks())
    assert response.status_code == 413, response.text
    assert (await small.get("/files/streamed.wav")).status_code == 404


async def test_a_declared_length_over_the_limit_is_refused_before_the_body(small_api, auth):
    """Content-Length says 50 MB and nothing follows: the answer comes from the
    header alone; an API that waited for the body would never answer."""
    host, port = small_api.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write((f"PUT /files/huge.wav HTTP/1.1\r\nHost: {host}\r\n"
                      f"Authorization: {auth['Authorization']}\r\n"
                      "Content-Type: audio/wav\r\nContent-Length: 50000000\r\n\r\n").encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
    assert status_line.split()[1] == b"413", status_line


def flac_claiming(seconds: float, claimed_frames: int, rate: int = 8000) -> bytes:
    """A FLAC of `seconds` whose STREAMINFO declares `claimed_frames` (0: unknown)."""
    data = bytearray(tone(440, seconds, "FLAC", rate=rate))
    assert data[:4] == b"fLaC"
    # STREAMINFO starts at byte 8; its total-samples field is the low 36 bits
    # of the 8 bytes at offset 10.
    packed = struct.unpack(">Q", bytes(data[18:26]))[0] & ~((1 << 36) - 1)
    data[18:26] = struct.pack(">Q", packed | claimed_frames)
    return bytes(data)


@pytest.mark.parametrize(("audio", "said"), [
    (tone(440, 0.5, "FLAC", rate=8000, channels=MAX_CHANNELS + 1),
     f"3 channels; at most {MAX_CHANNELS} allowed"),
    (tone(440, 0.5, "FLAC", rate=96000), f"96000 Hz; at most {MAX_RATE} Hz allowed"),
    (flac_claiming(1.0, 0), "does not declare its length"),
    (flac_claiming(1.0, 8000 * (MAX_SECONDS + 1)), "longer than"),
])
async def test_what_the_header_declares_beyond_a_limit_is_422(small, audio, said):
    response = await small.put("/files/declared.flac", content=audio)
    assert response.status_code == 422, response.text
    assert said in response.json()["message"]
    assert (await small.get("/files/declared.flac")).status_code == 404


async def test_a_header_that_overstates_its_length_is_422(small):
    response = await small.put("/files/liar.flac", content=flac_claiming(1.0, 8000 * 2 - 80))
    assert response.status_code == 422, response.text
    assert "could not be decoded" in response.json()["message"]


async def test_an_upload_while_the_slots_are_full_is_503_with_retry_after(small):
    audio = tone(440, 1.0, rate=8000)
    sent_half, finish = asyncio.Event(), asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield audio[:len(audio) // 2]
        sent_half.set()
        await finish.wait()
        yield audio[len(audio) // 2:]

    first = asyncio.create_task(small.put("/files/first.wav", content=slow()))
    await asyncio.wait_for(sent_half.wait(), 10)
    # The one slot is held while the first body is read; poll until the API has it.
    for _ in range(100):
        second = await small.put("/files/second.wav", content=audio)
        if second.status_code == 503:
            break
        await asyncio.sleep(0.05)
    assert second.status_code == 503, second.text
    assert second.headers["Retry-After"] == "5"
    assert second.json() == {"message": "Too many uploads in progress; retry later"}
    finish.set()
    assert (await asyncio.wait_for(first, 20)).status_code == 201
    again = await small.put("/files/second.wav", content=audio)
    assert again.status_code == 201, again.text


def test_conversions_to_the_same_stem_at_once_all_succeed_and_a_failed_one_removes_nothing(
        tmp_path: Path) -> None:
    """Two renders of the same speech convert to the same stem at the same time:
    each writes its own temporary files, both publish whole files, and a
    conversion that fails leaves the files published under its stem alone."""
    data = tone(440, 3.0, "WAV", rate=44100)
    limits = sound_files.Limits(seconds=10, rate=48000, channels=2)
    start = threading.Barrier(8)

    def convert() -> sound_files.Converted:
        start.wait(timeout=30)
        return sound_files.convert(data, tmp_path, limits, stem="same")

    with ThreadPoolExecutor(8) as pool:
        done = [f.result(timeout=120) for f in [pool.submit(convert) for _ in range(8)]]
    assert {(c.stem, c.duration_ms) for c in done} == {("same", 3000)}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "same.alaw", "same.ulaw", "same.wav16"]
    assert (tmp_path / "same.ulaw").stat().st_size == 3 * 8000
    assert (tmp_path / "same.alaw").stat().st_size == 3 * 8000
    assert soundfile.info(str(tmp_path / "same.wav16")).frames == 3 * 16000

    with pytest.raises(Refused, match="shorter than"):
        sound_files.convert(tone(440, 0.05, "WAV", rate=8000), tmp_path, limits, stem="same")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "same.alaw", "same.ulaw", "same.wav16"]
    assert (tmp_path / "same.ulaw").stat().st_size == 3 * 8000


async def test_a_file_error_in_a_request_is_a_500_not_a_database_outage(client, auth, pool):
    """An OSError about a file (here: the account's sound folder is a file)
    is a server fault, not "the database is away, retry later": no 503."""
    from .conftest import TEST_ENV

    account = await pool.fetchval(
        "SELECT account_id FROM api_keys WHERE key_hash = sha256($1::bytea)",
        auth["Authorization"].removeprefix("Bearer ").encode())
    folder = Path(TEST_ENV["AMIVONO_SOUNDS_DIR"]) / str(account)
    aside = folder.with_name(f"{account}.aside")
    if folder.exists():  # an earlier run's account of the same id
        folder.rename(aside)
    folder.write_bytes(b"not a folder")
    try:
        r = await client.put("/files/x.wav", content=tone(440, 0.5), headers=auth)
    finally:
        folder.unlink()
        if aside.exists():
            aside.rename(folder)
    assert r.status_code == 500, (r.status_code, r.text)
    assert "database" not in r.text.lower()
