"""Destination guards, voice and SMS alike: number types refused (422
destination_not_allowed), the countries an account may send to (default
AMIVONO_ALLOWED_COUNTRIES, set per account with `amivono keys countries`),
and the hourly cap per account and destination (429 with Retry-After), on an
API of its own with a cap of 3."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from service.store.api_keys import create_key

from .audio import tone
from .conftest import LAUNCH
from .test_audio_uploads import free_port

CAP = 3
SE = "+46736265449"


@pytest.fixture(scope="module")
async def capped_api(db: str) -> AsyncIterator[str]:
    port = free_port()
    proc = await LAUNCH.api("api-capped", port, env={
        "AMIVONO_DESTINATION_CAP_PER_HOUR": str(CAP)})
    yield f"http://127.0.0.1:{port}"
    await asyncio.to_thread(proc.stop)


@pytest.fixture
async def capped(capped_api: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=capped_api, timeout=20) as c:
        yield c


async def account(pool) -> tuple[str, dict[str, str]]:
    name = f"dest-{os.getpid()}-{time.time_ns()}"
    return name, {"Authorization": f"Bearer {await create_key(pool, name)}"}


def sms(to: str, **more: object) -> dict[str, object]:
    return {"from": "+46736265400", "to": to, "message": "hello", **more}


def voice(to: str) -> dict[str, object]:
    return {"from": "+46736265400", "to": to, "file": "tone.wav"}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service", *args], capture_output=True,
                          text=True, timeout=60, env=os.environ)


def refused_destination(response: httpx.Response, said: str) -> None:
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert (error["field"], error["code"]) == ("to", "destination_not_allowed"), error
    assert said in error["message"]


@pytest.mark.parametrize(("to", "said"), [
    ("+19005550123", "premium-rate"), ("+449098790000", "premium-rate"),
    ("+46939123456", "premium-rate"), ("+979123456789", "premium-rate"),
    ("+881612345678", "satellite"), ("+34901123456", "shared-cost"),
    ("+252612345678", "is in SO; this account may send to SE only"),
])
async def test_premium_satellite_and_foreign_destinations_are_refused(client, auth, to, said):
    for path, body in (("/messages/sms", sms(to)), ("/messages/voice", voice(to))):
        refused_destination(await client.post(path, json=body, headers=auth), said)
        assert (await client.get(path, headers=auth)).json() == []


async def test_keys_countries_sets_clears_and_opens_an_accounts_countries(client, pool):
    name, auth = await account(pool)
    norway = "+4791234567"
    refused_destination(await client.post("/messages/sms", json=sms(norway), headers=auth),
                        "is in NO; this account may send to SE only")

    done = cli("keys", "countries", name, "no", "DK")
    assert done.returncode == 0 and done.stdout == f"{name}: sends to NO DK\n", done.stderr
    assert (await client.post("/messages/sms", json=sms(norway), headers=auth)).status_code == 201
    refused_destination(await client.post("/messages/sms", json=sms(SE), headers=auth),
                        "is in SE; this account may send to NO DK only")

    done = cli("keys", "countries", name, "--any")
    assert done.stdout == f"{name}: sends to every country\n", done.stderr
    somalia = await client.post("/messages/sms", json=sms("+252612345678"), headers=auth)
    assert somalia.status_code == 201, somalia.text
    # Every country, but never a premium-rate number.
    refused_destination(await client.post("/messages/sms", json=sms("+19005550123"),
                                          headers=auth), "premium-rate")

    done = cli("keys", "countries", name, "--default")
    assert done.stdout.startswith(f"{name}: sends to the default"), done.stderr
    refused_destination(await client.post("/messages/sms", json=sms(norway), headers=auth),
                        "may send to SE only")
    assert (await client.post("/messages/sms", json=sms(SE), headers=auth)).status_code == 201

    for bad in (["XX"], ["SE", "--any"], []):
        refused = cli("keys", "countries", name, *bad)
        assert refused.returncode != 0, bad
    assert "ISO 3166" in cli("keys", "countries", name, "XX").stderr
    assert "no account" in cli("keys", "countries", f"{name}-none", "SE").stderr


async def test_the_hourly_cap_per_destination_counts_sms_and_voice(capped, pool):
    _, auth = await account(pool)
    put = await capped.put("/files/tone.wav", content=tone(440, 0.5), headers=auth)
    assert put.status_code == 201, put.text
    replayed = {**auth, "Idempotency-Key": "the-first"}
    accepted = [await capped.post("/messages/sms", json=sms(SE, repeat=5), headers=replayed),
                await capped.post("/messages/voice", json=voice(SE), headers=auth),
                await capped.post("/messages/sms", json=sms(SE), headers=auth)]
    assert [r.status_code for r in accepted] == [201] * CAP, [r.text for r in accepted]
    # A replay creates nothing, so it is not refused and does not count.
    again = await capped.post("/messages/sms", json=sms(SE, repeat=5), headers=replayed)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"

    for path, body in (("/messages/sms", sms(SE)), ("/messages/voice", voice(SE))):
        over = await capped.post(path, json=body, headers=auth)
        assert over.status_code == 429, over.text
        assert 1 <= int(over.headers["Retry-After"]) <= 3600
        said = f"at most {CAP} messages per hour from this account to {SE}"
        assert said in over.json()["message"]
        [error] = over.json()["errors"]
        assert (error["field"], error["code"]) == ("to", "destination_cap"), error
    # Another number, and another account to the same number, are not capped.
    other = await capped.post("/messages/sms", json=sms("+46736265450"), headers=auth)
    assert other.status_code == 201, other.text
    _, auth2 = await account(pool)
    assert (await capped.post("/messages/sms", json=sms(SE), headers=auth2)).status_code == 201


async def test_the_cap_holds_under_concurrent_requests(capped, pool):
    _, auth = await account(pool)
    answers = await asyncio.gather(*(capped.post("/messages/sms", json=sms(SE), headers=auth)
                                     for _ in range(12)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [201] * CAP + [429] * (12 - CAP), [r.text for r in answers]
