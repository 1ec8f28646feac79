"""The operator's commands, run as an operator would."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from .conftest import wait_for


def amivono(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args], capture_output=True, text=True, timeout=60
    )


async def test_keys_create_prints_the_key_alone_and_it_works(client, db):
    result = await asyncio.to_thread(amivono, "keys", "create", "cli-account")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("amv_") and len(lines[0]) > 40
    response = await client.get("/messages/sms", headers={"Authorization": f"Bearer {lines[0]}"})
    assert response.status_code == 200
    second = await asyncio.to_thread(amivono, "keys", "create", "cli-account")
    assert second.stdout.strip() != lines[0]


async def test_carrier_messages_prints_json_lines(client, auth, carrier, dispatcher):
    body = {"from": "+46736265400", "to": "+46736265449", "message": 'Seen | by "CLI"'}
    created = (await client.post("/messages/sms", json=body, headers=auth)).json()

    async def seen() -> dict | None:
        result = await asyncio.to_thread(amivono, "carrier", "messages")
        assert result.returncode == 0, result.stderr
        for line in result.stdout.splitlines():
            record = json.loads(line)
            if record["message_id"] == str(created["id"]):
                return record
        return None

    record = await wait_for(seen, 10, interval=0.3, what="carrier CLI output")
    assert record["body"] == body["message"]
    assert record["from"] == body["from"] and record["to"] == body["to"]
    assert record["time"].endswith("Z")


def test_settings_lists_every_variable():
    result = amivono("settings")
    assert result.returncode == 0
    for name in (
        "AMIVONO_DATABASE_URL",
        "AMIVONO_PUBLIC_BASE_URL",
        "AMIVONO_LINK_BASE_URL",
        "AMIVONO_MINUTE_SECONDS",
    ):
        assert name in result.stdout
    assert "amivono-ari-secret" not in result.stdout
