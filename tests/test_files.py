"""Sound files: uploads in the formats people have, refusals, namespaces."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile

from service.store.api_keys import hash_key

from .audio import tone

VOICE = {"from": "+46736265400", "to": "+46736265449"}


@pytest.mark.parametrize(("fmt", "rate", "channels"), [
    ("WAV", 8000, 1), ("WAV", 48000, 2), ("MP3", 44100, 2), ("OGG", 22050, 1),
    ("FLAC", 16000, 1),
])
async def test_common_formats_are_converted(client, auth, pool, settings, fmt, rate, channels):
    upload = tone(440, 1.0, fmt, rate=rate, channels=channels)
    response = await client.put(f"/files/in.{fmt.lower()}", content=upload, headers=auth)
    assert response.status_code == 201, response.text
    info = response.json()
    assert info["duration"] == pytest.approx(1.0, abs=0.06)
    assert info["source_rate"] == rate and info["size"] == len(upload)
    assert response.headers["location"].endswith(f"/files/in.{fmt.lower()}")
    key = auth["Authorization"].split(" ", 1)[1]
    row = await pool.fetchrow(
        "SELECT f.account_id, f.stem FROM sound_files f JOIN api_keys k "
        "ON k.account_id = f.account_id WHERE k.key_hash = $1 AND f.name = $2",
        hash_key(key), f"in.{fmt.lower()}")
    folder = Path(settings.sounds_dir) / str(row["account_id"])
    for ext, expected_rate in (("ulaw", 8000), ("alaw", 8000), ("wav16", 16000)):
        path = folder / f"{row['stem']}.{ext}"
        if ext == "wav16":
            with path.open("rb") as f:
                data, sr = soundfile.read(f)
        else:
            data, sr = soundfile.read(path, samplerate=8000, channels=1, format="RAW",
                                      subtype=ext.upper())
        assert sr == expected_rate and data.ndim == 1
        assert len(data) / sr == pytest.approx(1.0, abs=0.06)


async def test_replacing_a_file_updates_it(client, auth):
    first = await client.put("/files/msg.wav", content=tone(440, 1.0), headers=auth)
    second = await client.put("/files/msg.wav", content=tone(440, 2.0), headers=auth)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["duration"] == pytest.approx(2.0, abs=0.05)
    listed = (await client.get("/files", headers=auth)).json()
    assert [f["name"] for f in listed] == ["msg.wav"]


@pytest.mark.parametrize(("body", "status"), [
    (b"this is plainly not audio, just some text in a file", 415),
    (b"\x00" * 4096, 415),
    (b"ID3\x04\x00\x00\x00\x00\x00\x00garbage-after-an-id3-header" * 10, 415),
])
async def test_non_audio_is_refused(client, auth, body, status):
    response = await client.put("/files/x.mp3", content=body, headers=auth)
    assert response.status_code == status, response.text
    assert "audio" in response.json()["message"]
    # libsndfile's own words, not the repr of the object it read from.
    assert " object at 0x" not in response.json()["message"]
    assert (await client.get("/files/x.mp3", headers=auth)).status_code == 404


async def test_truncated_wav_is_refused(client, auth):
    whole = tone(440, 1.0)
    response = await client.put("/files/cut.wav", content=whole[: len(whole) // 2],
                                headers=auth)
    assert response.status_code == 422 and "truncated" in response.json()["message"]


async def test_empty_and_too_short_are_refused(client, auth):
    assert (await client.put("/files/e.wav", content=b"", headers=auth)).status_code == 422
    short = io.BytesIO()
    soundfile.write(short, np.zeros(80), 8000, format="WAV")
    response = await client.put("/files/s.wav", content=short.getvalue(), headers=auth)
    assert response.status_code == 422 and "shorter" in response.json()["message"]


async def test_too_large_is_413(client, auth):
    body = b"\x00" * (20 * 1024 * 1024 + 1)
    response = await client.put("/files/big.wav", content=body, headers=auth)
    assert response.status_code == 413


OTHER_SLOTS = re.compile(r"(sounds|inbox)-test\d*")


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `root` (size and mtime), to compare before and after."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def storage(settings) -> dict[str, dict[str, tuple[int, int]]]:
    """The sounds folder, every account's folder in it, and what lies beside it:
    where a name used as a path would land (../, ../../etc)."""
    sounds = Path(settings.sounds_dir)
    beside = {p.name: (0, 0) for p in sounds.parent.iterdir()
              # other test slots' folders come and go meanwhile
              if not OTHER_SLOTS.fullmatch(p.name) or p == sounds}
    return {"sounds": tree(sounds), "beside": beside}


async def raw(client, method: str, target: str, **kwargs):
    """A request whose target goes on the wire byte for byte: httpx would
    otherwise remove dot segments (/files/.. becomes /) before sending."""
    return await client.request(method, "/", extensions={"target": target.encode()}, **kwargs)


# Raw path segments after /files/: each reaches the route and its name check
# (422), a decoded slash too. Never a redirect.
@pytest.mark.parametrize(("segment", "status"), [
    ("..", 422), (".", 422), ("%2e%2e", 422), ("%2E", 422), (".%2e", 422), ("a" * 65, 422),
    ("x%20y.wav", 422), ("%C3%A4.wav", 422), ("a:b", 422), ("a%5Cb", 422), ("a%00b", 422),
    ("..;", 422), ("a%2Fb", 422), ("..%2F..%2Fetc%2Fpasswd", 422), ("%2e%2e%2f", 422),
    ("%2e%2e%2F%2e%2e%2Fetc", 422),
])
async def test_bad_names_are_refused(client, auth, settings, segment, status):
    before = storage(settings)
    for method in ("PUT", "GET", "DELETE"):
        response = await raw(client, method, f"/files/{segment}", headers=auth,
                             content=tone(440, 0.5) if method == "PUT" else None)
        assert response.status_code == status, (method, segment, response.status_code,
                                                 response.headers.get("location"))
        if status == 422:  # the name check itself answered, not the router
            errors = response.json()["errors"]
            assert [(e["field"], e["code"]) for e in errors] == [("name", "invalid")]
    assert (await client.get("/files", headers=auth)).json() == []
    assert storage(settings) == before


async def test_path_tricks_never_escape_the_namespace(client, auth, settings):
    assert (await client.put("/files/kept.wav", content=tone(440, 0.5),
                             headers=auth)).status_code == 201
    before = storage(settings)
    wrong = []
    for target in ("/files/../../etc/passwd", "/files/..%2F..%2Fetc%2Fpasswd",
                   "/files/%2e%2e%2fetc", "/files/%2e%2e%2F%2e%2e%2Fetc%2Fpasswd",
                   "/files/..%2f", "/files/%2e%2e/", "/files/../", "/files/kept.wav/",
                   "/files/a/b", "/files/./kept.wav", "/files/%2e/kept.wav",
                   "/files/kept.wav/..", "/files/", "/files//kept.wav", "//files/kept.wav"):
        for method in ("PUT", "GET", "DELETE"):
            try:
                response = await raw(client, method, target, headers=auth,
                                     content=tone(440, 0.5) if method == "PUT" else None)
            except httpx.TransportError as exc:  # the server gave up on it
                wrong.append((method, target, repr(exc), None))
                continue
            # 422 from the name check, or 404: no such route ("//files/x"). A
            # redirect (Location) would send the client to a path with dot
            # segments in it, and past the name check.
            if response.status_code not in (404, 422) or "location" in response.headers:
                wrong.append((method, target, response.status_code,
                              response.headers.get("location")))
    after = storage(settings)
    assert not wrong and after == before, (wrong, {
        k: sorted(set(after[k].items()) ^ set(before[k].items())) for k in after})
    listed = (await client.get("/files", headers=auth)).json()
    assert [f["name"] for f in listed] == ["kept.wav"]


async def test_another_accounts_file_is_invisible(client, new_key):
    alice = {"Authorization": f"Bearer {await new_key()}"}
    bob = {"Authorization": f"Bearer {await new_key()}"}
    assert (await client.put("/files/secret.wav", content=tone(440, 0.5),
                             headers=alice)).status_code == 201
    assert (await client.get("/files/secret.wav", headers=bob)).status_code == 404
    assert (await client.delete("/files/secret.wav", headers=bob)).status_code == 404
    assert (await client.get("/files", headers=bob)).json() == []
    response = await client.post("/messages/voice", headers=bob,
                                 json={**VOICE, "file": "secret.wav"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "file"
    assert (await client.get("/files/secret.wav", headers=alice)).status_code == 200


async def test_delete_is_409_while_a_queued_message_needs_the_file(client, auth, pool):
    await client.put("/files/queued.wav", content=tone(440, 0.5), headers=auth)
    created = await client.post("/messages/voice", headers=auth,
                                json={**VOICE, "file": "queued.wav"})
    assert created.status_code == 201
    response = await client.delete("/files/queued.wav", headers=auth)
    assert response.status_code == 409
    await client.delete(f"/messages/voice/{created.json()['id']}", headers=auth)
    assert (await client.delete("/files/queued.wav", headers=auth)).status_code == 204
    assert (await client.get("/files/queued.wav", headers=auth)).status_code == 404
    # The finished message keeps its history.
    kept = await client.get(f"/messages/voice/{created.json()['id']}", headers=auth)
    assert kept.json()["file"] == "queued.wav" and kept.json()["status"] == "canceled"


@pytest.mark.parametrize(("changes", "field", "code"), [
    ({"file": "nope.wav"}, "file", "invalid"),
    ({"file": "../x"}, "file", "invalid"),
    ({"file": None}, "file", "missing_field"),
    ({"to": "+4673&PJSIP/x"}, "to", "invalid"),
    ({"from": "+46736265400@evil"}, "from", "invalid"),
    ({"retries": 6}, "retries", "out_of_range"),
    ({"retry_interval": 0}, "retry_interval", "out_of_range"),
    ({"message": "hi"}, "message", "unknown_field"),
])
async def test_voice_validation(client, auth, changes, field, code):
    await client.put("/files/ok.wav", content=tone(440, 0.5), headers=auth)
    body = {**VOICE, "file": "ok.wav", **changes}
    body = {k: v for k, v in body.items() if v is not None}
    response = await client.post("/messages/voice", json=body, headers=auth)
    assert response.status_code == 422, response.text
    assert (field, code) in [(e["field"], e["code"]) for e in response.json()["errors"]]


async def test_voice_messages_are_per_account_and_idempotent(client, new_key):
    alice = {"Authorization": f"Bearer {await new_key()}"}
    bob = {"Authorization": f"Bearer {await new_key()}"}
    await client.put("/files/a.wav", content=tone(440, 0.5), headers=alice)
    headers = {**alice, "Idempotency-Key": f"v-{time.time_ns()}"}
    body = {**VOICE, "to": "+46700000019", "file": "a.wav"}
    first = await client.post("/messages/voice", json=body, headers=headers)
    again = await client.post("/messages/voice", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert first.headers["location"].endswith(f"/messages/voice/{first.json()['id']}")
    message_id = first.json()["id"]
    for method in ("GET", "DELETE"):
        response = await client.request(method, f"/messages/voice/{message_id}", headers=bob)
        assert response.status_code == 404
    listed = await client.get("/messages/voice", headers=alice)
    assert [m["id"] for m in listed.json()] == [message_id]
    assert "x-ratelimit-remaining" in listed.headers
    await client.delete(f"/messages/voice/{message_id}", headers=alice)
