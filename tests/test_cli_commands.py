"""Operator commands the README promises, run as an operator would: the
sandbox's `amivono asterisk up|down|status`, `keys rate-limit`, and the
per-account, per-kind listings."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from sandbox.instances import Instance
from service.store.api_keys import create_key

from .audio import tone
from .conftest import SLOT, TEST_ENV


async def run_cli(*args: str, env: dict[str, str] | None = None
                  ) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "service", *args], capture_output=True,
        text=True, timeout=120, env={**os.environ, **(env or {})})


# --- amivono asterisk, on a throw-away instance set --------------------------

# Its own folder and ports (in this slot's ranges), so nothing here can touch
# the session's sandbox, which must still be running at the end.
OFFSET = 57
THROWAWAY_DIR = f"/srv/amivono-cli-test{SLOT or ''}"
THROWAWAY = {
    "AMIVONO_RUN_DIR": THROWAWAY_DIR,
    "AMIVONO_TRUNK_PORT": str(int(TEST_ENV["AMIVONO_TRUNK_PORT"]) + OFFSET),
    "AMIVONO_CARRIER_HTTP_PORT": str(int(TEST_ENV["AMIVONO_CARRIER_HTTP_PORT"]) + OFFSET),
    "AMIVONO_CARRIER_AMI_PORT": str(int(TEST_ENV["AMIVONO_CARRIER_AMI_PORT"]) + OFFSET),
    "AMIVONO_SIP_PORT": str(int(TEST_ENV["AMIVONO_SIP_PORT"]) + OFFSET),
    "AMIVONO_HTTP_PORT": str(int(TEST_ENV["AMIVONO_HTTP_PORT"]) + OFFSET),
    "AMIVONO_AMI_PORT": str(int(TEST_ENV["AMIVONO_AMI_PORT"]) + OFFSET),
}


async def carrier_ari_answers(settings) -> bool:
    """The throw-away carrier's ARI, asked directly (not through the CLI)."""
    url = f"http://127.0.0.1:{THROWAWAY['AMIVONO_CARRIER_HTTP_PORT']}/ari/asterisk/info"
    async with httpx.AsyncClient(timeout=10) as c:
        try:
            response = await c.get(url, auth=(settings.ari_user, settings.ari_password))
        except httpx.ConnectError:
            return False
    assert response.status_code == 200, response.text
    return True


async def test_asterisk_up_status_down(settings, gateway, carrier):
    # Folders as this process sees them (inside the Asterisk root if it is a chroot).
    outside = carrier.runtime.outside(THROWAWAY_DIR)
    gateway_dir, carrier_dir = outside / "gateway", outside / "carrier"
    try:
        status = await run_cli("asterisk", "status", env=THROWAWAY)
        assert status.returncode == 0, status.stderr
        assert status.stdout.splitlines() == [f"gateway: stopped ({gateway_dir})",
                                              f"carrier: stopped ({carrier_dir})"]
        assert not await carrier_ari_answers(settings)

        up = await run_cli("asterisk", "up", "carrier", env=THROWAWAY)
        assert up.returncode == 0, up.stderr
        assert up.stdout == f"carrier: running ({carrier_dir})\n"
        assert await carrier_ari_answers(settings)
        status = await run_cli("asterisk", "status", env=THROWAWAY)
        assert status.stdout.splitlines() == [f"gateway: stopped ({gateway_dir})",
                                              f"carrier: running ({carrier_dir})"]

        down = await run_cli("asterisk", "down", "carrier", env=THROWAWAY)
        assert down.returncode == 0, down.stderr
        assert down.stdout == "carrier: stopped\n"
        assert not await carrier_ari_answers(settings)
        status = await run_cli("asterisk", "status", "carrier", env=THROWAWAY)
        assert status.stdout == f"carrier: stopped ({carrier_dir})\n"
    finally:
        # Stopped by the sandbox's own code, not the command under test.
        throwaway = dataclasses.replace(
            settings, run_dir=THROWAWAY_DIR,
            trunk_port=int(THROWAWAY["AMIVONO_TRUNK_PORT"]),
            carrier_http_port=int(THROWAWAY["AMIVONO_CARRIER_HTTP_PORT"]),
            carrier_ami_port=int(THROWAWAY["AMIVONO_CARRIER_AMI_PORT"]))
        await asyncio.to_thread(Instance("carrier", throwaway, carrier.runtime).stop)
        shutil.rmtree(outside, ignore_errors=True)
    # The session's own instances were never touched.
    assert gateway.running() and carrier.running()


# --- keys rate-limit ----------------------------------------------------------

async def test_keys_rate_limit_is_the_apis_limit(client, pool, settings):
    account = f"cli-rate-{os.getpid()}-{time.time_ns()}"
    auth = {"Authorization": f"Bearer {await create_key(pool, account)}"}
    first = await client.get("/messages/sms", headers=auth)
    assert first.headers["X-RateLimit-Limit"] == str(settings.rate_limit_per_hour)

    result = await run_cli("keys", "rate-limit", account, "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{account}: 2 requests per hour\n"
    second = await client.get("/messages/sms", headers=auth)
    assert second.status_code == 200
    assert second.headers["X-RateLimit-Limit"] == "2"
    assert second.headers["X-RateLimit-Used"] == "2"
    assert second.headers["X-RateLimit-Remaining"] == "0"
    third = await client.get("/messages/sms", headers=auth)
    assert third.status_code == 429 and third.headers["X-RateLimit-Limit"] == "2"
    assert int(third.headers["Retry-After"]) >= 1

    missing = await run_cli("keys", "rate-limit", f"{account}-none", "2")
    assert missing.returncode != 0 and "no account" in missing.stderr


# --- listings for one account, one kind ------------------------------------------

@dataclass
class Account:
    name: str
    auth: dict[str, str]
    voice: list[int]
    sms: list[int]


@pytest.fixture(scope="module")
async def two_accounts(api: str, pool: asyncpg.Pool):
    """Two accounts, each with a file of its own and voice messages (and one SMS
    for the first); no dispatcher runs, and the voice messages are canceled after."""
    made: list[Account] = []
    async with httpx.AsyncClient(base_url=api, timeout=20) as c:
        for letter, voices in (("a", 2), ("b", 1)):
            name = f"cli-list-{letter}-{os.getpid()}-{time.time_ns()}"
            auth = {"Authorization": f"Bearer {await create_key(pool, name)}"}
            put = await c.put(f"/files/{letter}.wav", content=tone(440, 0.5), headers=auth)
            assert put.status_code == 201, put.text
            account = Account(name, auth, [], [])
            for _ in range(voices):
                created = await c.post("/messages/voice", headers=auth, json={
                    "from": "+46736265400", "to": "+46736265449", "file": f"{letter}.wav"})
                assert created.status_code == 201, created.text
                account.voice.append(created.json()["id"])
            made.append(account)
        sms = await c.post("/messages/sms", headers=made[0].auth, json={
            "from": "+46736265400", "to": "+46736265449", "message": "Listed"})
        assert sms.status_code == 201
        made[0].sms.append(sms.json()["id"])
        yield made
        for account in made:
            for message_id in account.voice:
                await c.delete(f"/messages/voice/{message_id}", headers=account.auth)
            for message_id in account.sms:
                await c.delete(f"/messages/sms/{message_id}", headers=account.auth)


async def test_messages_list_voice_of_one_account(two_accounts):
    a, b = two_accounts
    listed = await run_cli("messages", "list", "--voice", "--account", a.name, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["id"] for r in rows] == sorted(a.voice, reverse=True)  # newest first
    assert all(r["account"] == a.name and r["file"] == "a.wav" for r in rows)
    table = (await run_cli("messages", "list", "--voice", "--account", b.name)).stdout
    header, *lines = table.splitlines()
    assert header.split()[:4] == ["ID", "ACCOUNT", "TO", "FILE"]
    assert [line.split()[:2] for line in lines] == [[str(b.voice[0]), b.name]]
    # Without --voice, the same account's SMS and nothing else.
    sms = json.loads((await run_cli("messages", "list", "--account", a.name, "--json")).stdout)
    assert [(r["id"], r["account"]) for r in sms] == [(a.sms[0], a.name)]
    assert "file" not in sms[0]


async def test_files_list_of_one_account(two_accounts):
    a, b = two_accounts
    listed = await run_cli("files", "list", "--account", a.name, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["account"], r["name"], r["duration"]) for r in rows] == [(a.name, "a.wav", 0.5)]
    assert set(rows[0]["formats"].split(",")) >= {"ulaw", "alaw"}
    every = json.loads((await run_cli("files", "list", "--json")).stdout)
    assert {(a.name, "a.wav"), (b.name, "b.wav")} <= {(r["account"], r["name"]) for r in every}
