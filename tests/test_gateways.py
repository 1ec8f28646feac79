"""Several gateway nodes behind one queue: the operator's commands, a node
killed in the middle of a burst, a disabled node, and the per-node caps
across dispatchers. Three real Asterisk instances: two gateway nodes
(`gateway`, `gateway2`) trunked to the one carrier simulator."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from sandbox.carrier_logs import received_sms
from sandbox.instances import Instance, ari_url_of
from sandbox.settings import SandboxSettings
from service.store.queue_signal import CHANNEL

from .audio import tone
from .conftest import TEST_ENV, start_dispatcher, wait_for

FROM = "+46736265400"
NO_ANSWER = "+46700000019"  # the carrier's phone that rings until the dial timeout


async def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "service", *args], capture_output=True,
        text=True, timeout=120, env={**os.environ})


@pytest.fixture(scope="module")
def gateway2(sandbox: dict[str, Instance], settings: SandboxSettings) -> Any:
    """The second gateway node, trunked to the session's carrier."""
    inst = Instance("gateway2", settings, sandbox["gateway"].runtime)
    inst.start()
    yield inst
    inst.stop()


@pytest.fixture
async def no_gateway_rows(pool: asyncpg.Pool) -> Any:
    """Gateway rows change what every dispatcher does: none before, none after."""
    await pool.execute("DELETE FROM gateways; DELETE FROM gateway_state")
    yield
    await pool.execute("DELETE FROM gateways; DELETE FROM gateway_state")


async def add_nodes(pool: asyncpg.Pool, settings: SandboxSettings,
                    **caps: tuple[int, float]) -> None:
    """n1 on the sandbox's `gateway`, n2 on `gateway2`: name=(calls, SMS/s)."""
    instance = {"n1": "gateway", "n2": "gateway2"}
    for name, (calls, per_second) in caps.items():
        await pool.execute(
            "INSERT INTO gateways (name, ari_url, ari_user, ari_password, calls, sms_per_second)"
            " VALUES ($1, $2, $3, $4, $5, $6)", name, ari_url_of(settings, instance[name]),
            settings.ari_user, settings.ari_password, calls, per_second)


def phone(group: int, n: int) -> str:
    """A Swedish mobile number (+4673G......) for one group of a test's messages."""
    return f"+4673{group}{n % 10**6:06d}"


async def post_sms(client: Any, auth: dict[str, str], numbers: list[str]) -> list[int]:
    gate = asyncio.Semaphore(16)

    async def one(i: int, number: str) -> int:
        async with gate:
            response = await client.post("/messages/sms", headers=auth, json={
                "from": FROM, "to": number, "message": f"burst {i}"})
        assert response.status_code == 201, response.text
        return int(response.json()["id"])
    return list(await asyncio.gather(*(one(i, n) for i, n in enumerate(numbers))))


async def post_calls(client: Any, auth: dict[str, str], file: str, numbers: list[str],
                     **extra: Any) -> list[int]:
    async def one(number: str) -> int:
        response = await client.post("/messages/voice", headers=auth, json={
            "from": FROM, "to": number, "file": file, **extra})
        assert response.status_code == 201, response.text
        return int(response.json()["id"])
    return list(await asyncio.gather(*(one(n) for n in numbers)))


async def hold(pool: asyncpg.Pool, table: str, ids: list[int]) -> None:
    await pool.execute(f"UPDATE {table} SET due_at = now() + interval '1 hour' "  # noqa: S608
                       "WHERE id = ANY($1::bigint[])", ids)


async def release(pool: asyncpg.Pool, table: str, ids: list[int]) -> None:
    await pool.execute(f"UPDATE {table} SET due_at = now() "  # noqa: S608
                       "WHERE id = ANY($1::bigint[])", ids)
    await pool.execute("SELECT pg_notify($1, '')", CHANNEL)


async def sms_done(pool: asyncpg.Pool, ids: list[int]) -> bool:
    return await pool.fetchval(
        "SELECT count(*) FROM sms_messages WHERE id = ANY($1::bigint[]) "
        "AND due_at IS NULL AND lease_attempt_id IS NULL", ids) == len(ids)


async def calls_done(pool: asyncpg.Pool, ids: list[int]) -> bool:
    return await pool.fetchval(
        "SELECT count(*) FROM voice_messages WHERE id = ANY($1::bigint[]) "
        "AND finished_at IS NOT NULL", ids) == len(ids)


async def in_use(pool: asyncpg.Pool, dispatchers: list[str]) -> dict[tuple[str, str], bool]:
    rows = await pool.fetch(
        "SELECT gateway, dispatcher, in_use FROM gateway_state WHERE dispatcher = ANY($1) "
        "AND updated_at > now() - interval '3 seconds'", dispatchers)
    return {(r["dispatcher"], r["gateway"]): r["in_use"] for r in rows}


async def until_in_use(pool: asyncpg.Pool, name: str, expected: dict[str, bool],
                       timeout: float = 20) -> None:
    """Until the dispatcher's heartbeat says which nodes it uses (node: in use)."""
    want = {(name, node): used for node, used in expected.items()}

    async def seen() -> bool:
        return await in_use(pool, [name]) == want
    await wait_for(seen, timeout, what=f"{name} using {expected}")


def peak(spans: list[tuple[Any, Any]]) -> int:
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running, most = 0, 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


# --- the operator's commands ---------------------------------------------------

async def test_gateways_commands_and_their_refusals(no_gateway_rows: None, pool: asyncpg.Pool,
                                                    settings: SandboxSettings) -> None:
    url = ari_url_of(settings, "gateway")
    creds = ["--ari-user", settings.ari_user, "--ari-password", settings.ari_password]
    # With no rows, the settings' single node is listed as 'default'.
    listed = json.loads((await run_cli("gateways", "list", "--json")).stdout)
    assert [(g["name"], g["configured"], g["ari_url"]) for g in listed] == [
        ("default", False, settings.ari_url)]

    done = await run_cli("gateways", "add", "n1", "--ari-url", url, *creds, "--calls", "7",
                         "--sms-per-second", "25", "--trunk", "carrier")
    assert done.returncode == 0 and "gateway n1: added" in done.stdout, done.stderr
    done = await run_cli("gateways", "add", "n2", "--ari-url", "http://127.0.0.1:1/ari", *creds)
    assert done.returncode == 0, done.stderr

    for args, reason in (
        (["n1", "--ari-url", url, *creds], "a gateway named 'n1' exists already"),
        (["n3", "--ari-url", "127.0.0.1:8088/ari", *creds], "--ari-url '127.0.0.1:8088/ari'"),
        (["n3", "--ari-url", "ftp://127.0.0.1/ari", *creds], "an http:// or https:// URL"),
        (["n3", "--ari-url", "http://127.0.0.1:99999/ari", *creds], "--ari-url"),
        (["bad name", "--ari-url", url, *creds], "name 'bad name'"),
        (["n3", "--ari-url", url, *creds, "--calls", "-1"], "--calls -1: 0 or more"),
        (["n3", "--ari-url", url, *creds, "--sms-per-second", "0"], "--sms-per-second 0"),
        (["n3", "--ari-url", url, "--ari-user", "", "--ari-password", "x"], "--ari-user"),
        (["n3", "--ari-url", url, *creds, "--trunk", "a/b"], "--trunk 'a/b'"),
    ):
        refused = await run_cli("gateways", "add", *args)
        assert refused.returncode == 1, (args, refused.stdout)
        assert "gateway not added" in refused.stderr and reason in refused.stderr, (
            args, refused.stderr)
    bad_number = await run_cli("gateways", "add", "n3", "--ari-url", url, *creds,
                               "--calls", "many")
    assert bad_number.returncode == 2 and "--calls" in bad_number.stderr

    listed = json.loads((await run_cli("gateways", "list", "--json")).stdout)
    assert [(g["name"], g["calls"], g["sms_per_second"], g["trunk"], g["enabled"])
            for g in listed] == [("n1", 7, 25.0, "carrier", True),
                                 ("n2", settings.calls_per_trunk, settings.sms_per_second,
                                  settings.trunk_endpoint, True)]
    assert {g["state"] for g in listed} == {"no dispatcher"}

    assert (await run_cli("gateways", "disable", "n2")).returncode == 0
    table = (await run_cli("gateways", "list")).stdout
    assert "n2" in table and "disabled" in table, table
    assert (await run_cli("gateways", "enable", "n2")).returncode == 0
    assert await pool.fetchval("SELECT enabled FROM gateways WHERE name = 'n2'") is True

    for action in ("disable", "enable", "remove"):
        unknown = await run_cli("gateways", action, "nope")
        assert unknown.returncode == 1 and "no gateway 'nope'" in unknown.stderr, unknown.stderr
    removed = await run_cli("gateways", "remove", "n2")
    assert removed.returncode == 0 and "removed" in removed.stdout
    assert await pool.fetchval("SELECT array_agg(name) FROM gateways") == ["n1"]


# --- a node killed in the middle of a burst -------------------------------------

async def test_a_killed_node_loses_no_work_and_is_used_again_when_back(
        no_gateway_rows: None, client: Any, auth: dict[str, str], pool: asyncpg.Pool,
        carrier: Instance, gateway: Instance, gateway2: Instance,
        settings: SandboxSettings) -> None:
    """500 SMS and 20 calls on two nodes; node 1's Asterisk is SIGKILLed in
    the middle. Every SMS reaches the carrier (twice only where a send may
    already have left, and then recorded `unknown`), every call ends final,
    and node 1, started again, takes work again."""
    await add_nodes(pool, settings, n1=(10, 60.0), n2=(10, 60.0))
    await client.put("/files/node.wav", content=tone(850, 3.0, rate=8000), headers=auth)
    stamp = time.time_ns() % 10**6
    numbers = [phone(0, stamp + i) for i in range(500)]
    sms_ids = await post_sms(client, auth, numbers)
    call_ids = await post_calls(client, auth, "node.wav",
                                [phone(1, stamp + i) for i in range(20)],
                                retries=3, retry_interval=1)
    await hold(pool, "sms_messages", sms_ids)
    await hold(pool, "voice_messages", call_ids)
    name = f"burst-{time.time_ns()}"
    proc = start_dispatcher(name, AMIVONO_SMS_PER_SECOND="1000", AMIVONO_SMS_CONCURRENCY="64",
                            AMIVONO_CALLS_PER_SECOND="50", AMIVONO_SMS_RETRY_SECONDS="0.5",
                            AMIVONO_GATEWAY_LOST_SECONDS="4")
    try:
        await until_in_use(pool, name, {"n1": True, "n2": True}, 20)
        await release(pool, "voice_messages", call_ids)
        await release(pool, "sms_messages", sms_ids)

        async def in_the_middle() -> bool:
            # 150 SMS sent, and calls playing on node 1.
            return int(await pool.fetchval(
                "SELECT count(*) FROM sms_attempts WHERE message_id = ANY($1::bigint[]) "
                "AND outcome = 'sent'", sms_ids)) >= 150 and int(await pool.fetchval(
                    "SELECT count(*) FROM voice_attempts WHERE message_id = ANY($1::bigint[])"
                    " AND gateway = 'n1' AND playback_started_at IS NOT NULL", call_ids)) >= 3
        await wait_for(in_the_middle, 30, interval=0.02, what="the middle of the burst")
        killed_at = datetime.now(UTC)
        gateway.kill()
        await wait_for(lambda: "gateway n1: lost" in proc.log(), 10, what="loss seen")

        await wait_for(lambda: sms_done(pool, sms_ids), 60, interval=0.2, what="500 SMS")
        await wait_for(lambda: calls_done(pool, call_ids), 90, interval=0.2, what="20 calls")

        # Nothing is left open.
        assert await pool.fetchval(
            "SELECT count(*) FROM sms_attempts WHERE message_id = ANY($1::bigint[]) "
            "AND finished_at IS NULL", sms_ids) == 0
        assert await pool.fetchval(
            "SELECT count(*) FROM voice_attempts WHERE message_id = ANY($1::bigint[]) "
            "AND finished_at IS NULL", call_ids) == 0
        # Every SMS reached the carrier; twice only where an attempt says it may have.
        wanted = {str(i) for i in sms_ids}
        arrived = Counter(m["message_id"] for m in await wait_for(
            lambda: [m for m in received_sms(carrier) if m["message_id"] in wanted]
            if wanted <= {m["message_id"] for m in received_sms(carrier)} else None,
            20, what="every SMS at the carrier"))
        attempts = await pool.fetch(
            "SELECT id, message_id, gateway, outcome, detail, started_at, finished_at "
            "FROM sms_attempts WHERE message_id = ANY($1::bigint[]) ORDER BY id", sms_ids)
        unknown = {str(a["message_id"]) for a in attempts if a["outcome"] == "unknown"}
        twice = {m for m, n in arrived.items() if n > 1}
        assert twice <= unknown, sorted(twice - unknown)
        statuses = await pool.fetch("SELECT status, count(*) FROM sms_message_view "
                                    "WHERE id = ANY($1::bigint[]) GROUP BY 1", sms_ids)
        assert {r["status"]: r["count"] for r in statuses} == {"completed": 500}
        by_node = Counter(a["gateway"] for a in attempts if a["outcome"] == "sent")
        assert by_node["n1"] >= 50 and by_node["n2"] >= 250, by_node
        assert not [a for a in attempts if a["gateway"] == "n1"
                    and a["started_at"] > killed_at and a["outcome"] == "sent"]

        calls = await pool.fetch(
            "SELECT m.id, m.outcome, array_agg(a.gateway ORDER BY a.id) AS nodes, "
            "array_agg(a.outcome ORDER BY a.id) AS outcomes, "
            "array_agg(a.cause_text ORDER BY a.id) AS causes, max(a.finished_at) AS ended "
            "FROM voice_messages m JOIN voice_attempts a ON a.message_id = m.id "
            "WHERE m.id = ANY($1::bigint[]) GROUP BY m.id", call_ids)
        assert {c["outcome"] for c in calls} == {"completed"}, calls
        lost = [c for c in calls if "n1" in c["nodes"] and c["outcomes"][0] == "failed"]
        assert lost, "no call was on node 1 when it was killed"
        for c in lost:
            assert c["causes"][0] == "gateway lost" and c["nodes"][-1] == "n2", c
        # Calls that were playing when it died waited for it (our timer), then were retried.
        assert len([c for c in lost if "during the call" in (await pool.fetchval(
            "SELECT detail FROM voice_attempts WHERE message_id = $1 ORDER BY id LIMIT 1",
            c["id"]))]) >= 3

        # The failure timeline, for the record (-s shows it): which messages
        # node 1's loss touched (an attempt on n1 not `sent`, or a send n1
        # did not take within its attempt), and when the last of them was sent.
        def after(t: datetime) -> float:
            return round((t - killed_at).total_seconds(), 2)
        touched = {a["message_id"] for a in attempts
                   if a["gateway"] == "n1" and a["outcome"] != "sent"}
        touched |= {int(m) for m in re.findall(
            r"sms (\d+) attempt \d+: gateway n1 did not take it", proc.log())}
        last_sms = max((a["finished_at"] for a in attempts
                        if a["message_id"] in touched and a["outcome"] == "sent"),
                       default=None)
        [seen] = [datetime.fromisoformat(json.loads(line)["ts"])
                  for line in proc.log().splitlines() if "gateway n1: lost" in line]
        print(f"\nfailure timeline (seconds after SIGKILL of node 1): loss seen by the "
              f"dispatcher {after(seen)}; {len(touched)} SMS re-routed to "
              f"n2, the last sent {after(last_sms) if last_sms else '-'}; last SMS of the "
              f"burst sent {after(max(a['finished_at'] for a in attempts))}; "
              f"{len(unknown)} recorded unknown, {len(twice)} arrived twice; "
              f"{len(lost)} calls lost with node 1, the last completed on n2 "
              f"{after(max(c['ended'] for c in lost))}; SMS by node {dict(by_node)}")

        # Node 1 back: it takes work again.
        gateway.start()
        await wait_for(lambda: "gateway n1: back after" in proc.log(), 30, what="n1 back")
        more = await post_sms(client, auth, [phone(2, stamp + i)
                                             for i in range(40)])
        await wait_for(lambda: sms_done(pool, more), 30, interval=0.2, what="40 more SMS")
        again = await pool.fetchval(
            "SELECT count(*) FROM sms_attempts WHERE message_id = ANY($1::bigint[]) "
            "AND gateway = 'n1' AND outcome = 'sent'", more)
        assert again >= 5, again
    finally:
        proc.stop()
        if not gateway.running():
            gateway.start()


# --- a disabled node ----------------------------------------------------------

async def test_a_disabled_node_gets_nothing_new(
        no_gateway_rows: None, client: Any, auth: dict[str, str], pool: asyncpg.Pool,
        gateway2: Instance, settings: SandboxSettings) -> None:
    await add_nodes(pool, settings, n1=(10, 200.0), n2=(10, 200.0))
    await client.put("/files/off.wav", content=tone(850, 0.5, rate=8000), headers=auth)
    name = f"off-{time.time_ns()}"
    metrics_port = int(TEST_ENV["AMIVONO_API_PORT"]) + 21
    proc = start_dispatcher(name, AMIVONO_CALLS_PER_SECOND="50",
                            AMIVONO_METRICS_PORT=str(metrics_port))
    try:
        await until_in_use(pool, name, {"n1": True, "n2": True}, 20)
        disabled = await run_cli("gateways", "disable", "n2")
        assert disabled.returncode == 0, disabled.stderr
        await until_in_use(pool, name, {"n1": True, "n2": False}, 10)
        stamp = time.time_ns() % 10**6
        sms = await post_sms(client, auth, [phone(3, stamp + i)
                                            for i in range(30)])
        calls = await post_calls(client, auth, "off.wav",
                                 [phone(4, stamp + i) for i in range(4)])
        await wait_for(lambda: sms_done(pool, sms), 30, interval=0.2, what="30 SMS")
        await wait_for(lambda: calls_done(pool, calls), 60, interval=0.2, what="4 calls")
        nodes = await pool.fetch(
            "SELECT gateway, count(*) FROM sms_attempts WHERE message_id = ANY($1::bigint[]) "
            "GROUP BY 1 UNION ALL SELECT gateway, count(*) FROM voice_attempts "
            "WHERE message_id = ANY($2::bigint[]) GROUP BY 1", sms, calls)
        assert {r["gateway"] for r in nodes} == {"n1"}, nodes
        table = (await run_cli("gateways", "list")).stdout
        assert "disabled" in table, table

        # Enabled again, it shares the work again.
        assert (await run_cli("gateways", "enable", "n2")).returncode == 0
        await until_in_use(pool, name, {"n1": True, "n2": True}, 10)
        sms = await post_sms(client, auth, [phone(5, stamp + i)
                                            for i in range(30)])
        await wait_for(lambda: sms_done(pool, sms), 30, interval=0.2, what="30 SMS")
        assert await pool.fetchval(
            "SELECT count(*) FROM sms_attempts WHERE message_id = ANY($1::bigint[]) "
            "AND gateway = 'n2'", sms) >= 5

        # Removed, its gauges go: no stale `connected 1` for a node not there.
        series = 'amivono_gateway_connected{gateway="n2"}'

        async def scrape() -> str:
            async with httpx.AsyncClient() as c:
                return (await c.get(f"http://127.0.0.1:{metrics_port}/metrics")).text

        assert series + " 1.0" in await scrape()
        assert (await run_cli("gateways", "remove", "n2")).returncode == 0
        await wait_for(lambda: _gone(scrape, series), 10, interval=0.2,
                       what="n2's gauge removed")
    finally:
        proc.stop()


async def _gone(scrape: Any, series: str) -> bool:
    return series not in await scrape()


# --- per-node caps across dispatchers ------------------------------------------

async def test_two_dispatchers_hold_each_nodes_caps(
        no_gateway_rows: None, client: Any, auth: dict[str, str], pool: asyncpg.Pool,
        gateway2: Instance, settings: SandboxSettings) -> None:
    """Node caps are for all dispatchers together: n1 2 calls and 10 SMS/s,
    n2 3 calls and 15 SMS/s, two dispatchers each free to go faster (the
    caps are far below what this machine does, so they, not it, set the pace)."""
    caps = {"n1": (2, 10.0), "n2": (3, 15.0)}
    await add_nodes(pool, settings, **caps)
    stamp = time.time_ns() % 10**6
    sms = await post_sms(client, auth, [phone(7, stamp + i)
                                        for i in range(150)])
    await client.put("/files/ring.wav", content=tone(850, 0.5, rate=8000), headers=auth)
    calls = await post_calls(client, auth, "ring.wav", [NO_ANSWER] * 12)
    await hold(pool, "sms_messages", sms)
    await hold(pool, "voice_messages", calls)
    names = [f"capped-{n}-{time.time_ns()}" for n in "ab"]
    procs = [start_dispatcher(n, AMIVONO_SMS_PER_SECOND="1000", AMIVONO_DIAL_TIMEOUT="3",
                              AMIVONO_CALLS_PER_SECOND="50") for n in names]
    try:
        for proc in procs:
            for node in caps:
                await wait_for(lambda p=proc, n=node: f"gateway {n}: SMS pace" in p.log()
                               and "shared by 2 dispatchers" in p.log(), 20,
                               what="pace shared")
        await release(pool, "voice_messages", calls)
        await release(pool, "sms_messages", sms)
        await wait_for(lambda: sms_done(pool, sms), 60, interval=0.2, what="150 SMS")
        await wait_for(lambda: calls_done(pool, calls), 60, interval=0.2, what="12 calls")
    finally:
        for proc in procs:
            proc.stop()
    attempts = await pool.fetch(
        "SELECT gateway, dispatcher, finished_at FROM sms_attempts "
        "WHERE message_id = ANY($1::bigint[]) AND outcome = 'sent'", sms)
    assert len(attempts) == 150 and {a["dispatcher"] for a in attempts} == set(names)
    for node, (_calls, per_second) in caps.items():
        times = sorted(a["finished_at"].timestamp() for a in attempts if a["gateway"] == node)
        assert len(times) > 40, (node, len(times))
        # The most hand-offs in any 2 s: the cap's, plus one per dispatcher
        # at each edge and some scheduling jitter; twice the cap if each
        # dispatcher paced the node alone.
        most = max(sum(1 for t in times[i:] if t < start + 2.0)
                   for i, start in enumerate(times))
        print(f"\n{node}: at most {most} SMS in 2 s (cap {per_second:g}/s), {len(times)} in all")
        assert 2 * per_second * 0.6 <= most <= 2 * per_second * 1.15 + 4, (node, most)
    spans = await pool.fetch(
        "SELECT gateway, started_at, finished_at FROM voice_attempts "
        "WHERE message_id = ANY($1::bigint[])", calls)
    assert len(spans) == 12
    for node, (cap, _) in caps.items():
        mine = [(s["started_at"], s["finished_at"]) for s in spans if s["gateway"] == node]
        print(f"{node}: at most {peak(mine)} calls at once (cap {cap})")
        assert peak(mine) == cap, (node, peak(mine))


# --- a send accepted just before the node died ----------------------------------

async def test_a_send_accepted_just_before_its_node_died_is_sent_again(
        no_gateway_rows: None, client: Any, auth: dict[str, str], pool: asyncpg.Pool,
        carrier: Instance, gateway: Instance, gateway2: Instance,
        settings: SandboxSettings) -> None:
    """Asterisk answers 202 when it queues the SIP MESSAGE, not when it leaves:
    a send its node accepted a moment before it was killed may have died with
    it. Its attempt becomes `unknown` and it is sent again through the other
    node. (+46700000035 never reports, so no report settles it first.)"""
    await add_nodes(pool, settings, n1=(10, 200.0), n2=(10, 200.0))
    name = f"doubt-{time.time_ns()}"
    proc = start_dispatcher(name)
    killed: Instance | None = None
    try:
        await until_in_use(pool, name, {"n1": True, "n2": True})
        [message_id] = await post_sms(client, auth, ["+46700000035"])

        async def first_sent() -> Any:
            return await pool.fetchrow(
                "SELECT id, gateway FROM sms_attempts WHERE message_id = $1 "
                "AND outcome = 'sent'", message_id)
        first = await wait_for(first_sent, 10, interval=0.01, what="the first send")
        killed = {"n1": gateway, "n2": gateway2}[first["gateway"]]
        killed.kill()
        other = "n2" if first["gateway"] == "n1" else "n1"

        async def resent() -> Any:
            return await pool.fetchrow(
                "SELECT gateway FROM sms_attempts WHERE message_id = $1 AND id > $2 "
                "AND outcome = 'sent'", message_id, first["id"])
        again = await wait_for(resent, 20, what="the send again")
        assert again["gateway"] == other
        was = await pool.fetchrow("SELECT outcome, detail FROM sms_attempts WHERE id = $1",
                                  first["id"])
        assert was["outcome"] == "unknown", dict(was)
        assert f"handed to gateway {first['gateway']} less than" in was["detail"], was["detail"]
        status = await pool.fetchrow(
            "SELECT status, sent_count FROM sms_message_view WHERE id = $1", message_id)
        assert (status["status"], status["sent_count"]) == ("completed", 1), dict(status)
        await wait_for(lambda: [m for m in received_sms(carrier)
                                if m["message_id"] == str(message_id)], 10, what="arrival")
    finally:
        proc.stop()
        if killed is not None:
            killed.start()


async def test_a_send_recorded_late_after_its_node_died_is_still_sent_again(
        no_gateway_rows: None, client: Any, auth: dict[str, str], pool: asyncpg.Pool,
        carrier: Instance, gateway: Instance, gateway2: Instance,
        settings: SandboxSettings) -> None:
    """As above, but the send's outcome is recorded late: its finish_send waits
    on a lock this test holds (its webhook trigger inserts into
    webhook_deliveries) well past the moment the resend looks, and past the
    7.5 s it used to retry for. The resend waits for it and still sends again."""
    await add_nodes(pool, settings, n1=(10, 200.0), n2=(10, 200.0))
    name = f"late-{time.time_ns()}"
    proc = start_dispatcher(name)
    killed: Instance | None = None
    holder = await pool.acquire()
    held = holder.transaction()
    try:
        await until_in_use(pool, name, {"n1": True, "n2": True})
        await held.start()
        await holder.execute("LOCK TABLE webhook_deliveries IN SHARE MODE")
        [message_id] = await post_sms(client, auth, ["+46700000035"])

        def handed() -> str | None:
            for line in proc.log().splitlines():
                if f"sms {message_id} attempt " in line and ": sent (" in line:
                    return "n1" if "on gateway n1" in line else "n2"
            return None
        node = await wait_for(handed, 10, interval=0.01, what="the send handed to a node")
        killed = {"n1": gateway, "n2": gateway2}[node]
        killed.kill()
        await wait_for(lambda: f"gateway {node}: lost" in proc.log(), 10, what="loss seen")
        await asyncio.sleep(9)  # the outcome held back this long on purpose
        assert await pool.fetchval(
            "SELECT count(*) FROM sms_attempts WHERE message_id = $1 AND outcome IS NOT NULL",
            message_id) == 0
        await held.commit()
        other = "n2" if node == "n1" else "n1"

        async def resent() -> Any:
            return await pool.fetchrow(
                "SELECT gateway FROM sms_attempts WHERE message_id = $1 AND outcome = 'sent'"
                " AND gateway = $2", message_id, other)
        again = await wait_for(resent, 20, what="the send again")
        assert again["gateway"] == other
        first = await pool.fetchrow(
            "SELECT outcome, detail FROM sms_attempts WHERE message_id = $1 ORDER BY id LIMIT 1",
            message_id)
        assert first["outcome"] == "unknown", dict(first)
        assert f"handed to gateway {node} less than" in first["detail"], first["detail"]
    finally:
        if holder.is_in_transaction():
            await held.rollback()
        await pool.release(holder)
        proc.stop()
        if killed is not None:
            killed.start()
