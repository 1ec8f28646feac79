"""Delivery reports with several dispatchers: every dispatcher hears every
report over ARI, but each report is written once (by the dispatcher that
sent its attempt, or else by the inbox replay), and none is lost when its
sender dies before the report comes."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from typing import Any

import asyncpg
import httpx

from sandbox.processes import Proc
from sandbox.settings import SandboxSettings

from .conftest import start_dispatcher, wait_for
from .sip_message import SipMessage

SETTINGS = SandboxSettings.from_env()
GATEWAY_SIP = ("127.0.0.1", SETTINGS.sip_port)
TRUNK = (SETTINGS.trunk_user, SETTINGS.trunk_password)
SILENT = "+46700000035"  # the carrier never reports an SMS to it
WRITTEN = re.compile(r"report for message \d+ attempt (\d+):")
DUPLICATE = re.compile(r"delivery report for attempt (\d+): duplicate")


async def post(client: httpx.AsyncClient, auth: dict[str, str], to: str) -> int:
    response = await client.post("/messages/sms", headers=auth, json={
        "from": "+46736265400", "to": to, "message": "report test"})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def report_writes(procs: list[Proc]) -> dict[str, list[int]]:
    """Attempt ids whose report each log says was written (recorded, or
    found a duplicate: a write all the same)."""
    found: dict[str, list[int]] = {"recorded": [], "duplicate": []}
    for proc in procs:
        for line in proc.log().splitlines():
            try:
                msg = json.loads(line)["msg"]
            except (ValueError, KeyError):
                continue
            for kind, pattern in (("recorded", WRITTEN), ("duplicate", DUPLICATE)):
                if match := pattern.match(msg):
                    found[kind].append(int(match.group(1)))
    return found


async def reported(pool: asyncpg.Pool, ids: list[int]) -> list[Any]:
    """The attempts of these SMS, once each has its report."""

    async def all_reported() -> list[Any]:
        rows = await pool.fetch(
            "SELECT a.id FROM sms_attempts a JOIN sms_delivery_reports r"
            " ON r.attempt_id = a.id WHERE a.message_id = ANY($1::bigint[])", ids)
        return rows if len(rows) == len(ids) else []

    return list(await wait_for(all_reported, 30, what=f"{len(ids)} reports"))


async def subscribed(*procs: Proc) -> None:
    for proc in procs:
        await wait_for(lambda p=proc: "inbound SMS: subscribed" in p.log(), 30,
                       what="subscribed")


async def test_two_dispatchers_write_each_report_once(client, auth, pool, sandbox):
    procs = [start_dispatcher(f"once-{x}-{time.time_ns()}") for x in "ab"]
    try:
        await subscribed(*procs)
        # Until its replay has found the inbox file (a fresh gateway has none
        # before its first inbound SMS), a dispatcher records every report.
        await reported(pool, [await post(client, auth, "+46736265499")])
        await asyncio.sleep(1.5)
        ids = [await post(client, auth, f"+4673{6265500 + i:07d}") for i in range(30)]
        attempts = await reported(pool, ids)
        # Past the replay's grace: it has read these lines by now, and found
        # them recorded.
        await asyncio.sleep(5)
        writes = report_writes(procs)
        ours = {row["id"] for row in attempts}
        assert sorted(a for a in writes["recorded"] if a in ours) == sorted(ours)
        assert [a for a in writes["duplicate"] if a in ours] == []
    finally:
        for proc in procs:
            proc.stop()


async def test_a_report_whose_sender_was_killed_is_recorded_by_the_survivor(
        client, auth, pool, sandbox):
    sender = start_dispatcher(f"sender-{time.time_ns()}")
    survivor: Proc | None = None
    try:
        await subscribed(sender)
        await reported(pool, [await post(client, auth, "+46736265499")])  # an inbox file
        message_id = await post(client, auth, SILENT)

        async def sent() -> Any:
            return await pool.fetchrow(
                "SELECT id, dispatcher FROM sms_attempts WHERE message_id = $1"
                " AND outcome = 'sent'", message_id)

        attempt = await wait_for(sent, 20, what="sent")
        survivor = start_dispatcher(f"survivor-{time.time_ns()}")
        await subscribed(survivor)
        await asyncio.sleep(1.5)  # its replay has found the inbox file
        sender.signal(signal.SIGKILL)
        sender.wait()
        # The carrier's report comes now: only the survivor hears it.
        receipt = (f"id:{attempt['id']} sub:001 dlvrd:001 submit date:2611271200 "
                   "done date:2611271200 stat:DELIVRD err:000 text:report test")
        report = SipMessage(GATEWAY_SIP, SILENT, "+46736265400", receipt,
                            headers={"X-Delivery-Report": "yes"})
        assert report.send(*TRUNK) == 202

        async def delivered() -> Any:
            return await pool.fetchval(
                "SELECT delivered_count FROM sms_messages WHERE id = $1", message_id)

        assert await wait_for(delivered, 20, what="recorded by the survivor") == 1
        assert await pool.fetchval(
            "SELECT count(*) FROM sms_delivery_reports WHERE attempt_id = $1",
            attempt["id"]) == 1
        assert f"attempt {attempt['id']}: delivered (stat DELIVRD, err 000) (from the inbox)" \
            in survivor.log()
    finally:
        sender.stop()
        if survivor is not None:
            survivor.stop()

