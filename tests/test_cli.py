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


async def run_cli(*args: str, env: dict[str, str] | None = None):
    import os
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "service", *args], capture_output=True,
        text=True, timeout=60, env={**os.environ, **(env or {})})


async def test_keys_list_and_revoke(client, db):
    created = await run_cli("keys", "create", "cli-revoke")
    key = created.stdout.strip()
    listed = await run_cli("keys", "list", "--json")
    rows = [r for r in json.loads(listed.stdout) if r["account"] == "cli-revoke"]
    mine = next(r for r in rows if key.startswith(r["prefix"]) and r["revoked_at"] is None)
    table = await run_cli("keys", "list")
    assert "ACCOUNT" in table.stdout and "cli-revoke" in table.stdout
    assert (await run_cli("keys", "revoke", str(mine["id"]))).returncode == 0
    response = await client.get("/messages/sms", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 401
    assert (await run_cli("keys", "revoke", str(mine["id"]))).returncode != 0


async def test_messages_list_show_cancel(client, auth):
    body = {"from": "+46736265400", "to": "+46736265449", "message": "Op", "repeat": 3,
            "repeat_interval": 60}
    created = (await client.post("/messages/sms", json=body, headers=auth)).json()
    listed = json.loads((await run_cli("messages", "list", "--json", "--limit", "200")).stdout)
    assert created["id"] in [m["id"] for m in listed]
    table = (await run_cli("messages", "list")).stdout
    assert table.splitlines()[0].split()[:3] == ["ID", "ACCOUNT", "TO"]
    shown = json.loads((await run_cli("messages", "show", str(created["id"]), "--json")).stdout)
    assert shown["id"] == created["id"] and "attempts" in shown and shown["account"]
    text = (await run_cli("messages", "show", str(created["id"]))).stdout
    assert "status" in text and str(created["id"]) in text
    canceled = await run_cli("messages", "cancel", str(created["id"]), "--json")
    assert canceled.returncode == 0 and json.loads(canceled.stdout)["status"] == "canceled"
    via_api = (await client.get(f"/messages/sms/{created['id']}", headers=auth)).json()
    assert via_api["status"] == "canceled"
    missing = await run_cli("messages", "show", "999999999")
    assert missing.returncode != 0 and "no sms message" in missing.stderr


async def test_files_upload_with_progress_and_list(client, auth, tmp_path):
    from .audio import tone

    path = tmp_path / "hello.wav"
    path.write_bytes(tone(440, 3.0))
    key = auth["Authorization"].split(" ", 1)[1]
    result = await run_cli("files", "upload", "hello.wav", str(path), "--key", key)
    assert result.returncode == 0, result.stderr
    assert "100%" in result.stderr and "hello.wav: 3.0 s" in result.stdout
    listed = json.loads((await run_cli("files", "list", "--json")).stdout)
    assert any(f["name"] == "hello.wav" and f["duration"] == 3.0 for f in listed)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    refused = await run_cli("files", "upload", "bad.wav", str(bad), "--key", key)
    assert refused.returncode != 0 and "415" in refused.stderr


async def test_status_reports_queue_and_reachability(db, sandbox):
    result = await run_cli("status", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["postgres"] == "ok" and report["asterisk"].startswith("ok: 22.")
    for key in ("sms_due", "sms_scheduled", "sms_in_flight", "voice_due", "voice_in_flight"):
        assert isinstance(report[key], int)
    down = await run_cli("status", env={"AMIVONO_ARI_URL": "http://127.0.0.1:9/ari"})
    assert down.returncode != 0 and "asterisk" in down.stdout


def test_settings_never_print_a_password_in_a_dsn():
    import os

    result = subprocess.run(
        [sys.executable, "-m", "service", "settings"], capture_output=True, text=True,
        env={**os.environ, "AMIVONO_DATABASE_URL": "postgresql://postgres:s3cret@db:5432/a"})
    assert "s3cret" not in result.stdout
    assert "AMIVONO_DATABASE_URL=postgresql://postgres:***@db:5432/a" in result.stdout
