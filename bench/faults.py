"""The fault suite: a running gateway (API and dispatcher as separate
processes, both real Asterisks, loopback only) under SMS load while faults
are injected, then one table of what held.

Faults: SIGKILL of the dispatcher, again and again, during an SMS burst;
PostgreSQL stopped and started under load (a cluster this suite creates in a
temporary folder on its own port, so nothing else is disturbed); the gateway
Asterisk SIGKILLed during calls and started again; a hostile-input corpus
fired at the API. It uses a stack apart (bench/stack.py with every port moved
by 10000, its own folders), so it needs no bench lock.

Exit status 1 when a must-be-zero line is not zero (2: set-up failed).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

os.environ["AMIVONO_BENCH_APART"] = "1"  # before stack: its ports and folders

import httpx  # noqa: E402
import stack  # noqa: E402
from voice_calls import tone_wav  # noqa: E402

from sandbox.instances import instances  # noqa: E402
from sandbox.pg_cluster import Cluster  # noqa: E402
from sandbox.processes import wait_for  # noqa: E402
from sandbox.settings import SandboxSettings  # noqa: E402

# Below Linux's ephemeral range (32768-60999), where a client socket of
# another program may hold a port for a moment.
PG_PORT = 31432
DB_URL = f"postgresql://postgres@127.0.0.1:{PG_PORT}/amivono_faults"
FROM = stack.SPEC_FROM


@dataclass
class Tally:
    sent: int = 0
    accepted: dict[str, int] = field(default_factory=dict)  # body -> message id
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    fivexx_outside: list[str] = field(default_factory=list)
    fivexx_inside: collections.Counter[int] = field(default_factory=collections.Counter)
    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    hostile: collections.Counter[str] = field(default_factory=collections.Counter)
    slow: collections.Counter[str] = field(default_factory=collections.Counter)
    guesses: collections.Counter[int] = field(default_factory=collections.Counter)
    exited: list[str] = field(default_factory=list)
    outage: bool = False  # PostgreSQL is being restarted (with a margin)


def classify(t: Tally, status: int, what: str) -> None:
    t.statuses[f"{status // 100}xx"] += 1
    if status >= 500:
        if t.outage:
            t.fivexx_inside[status] += 1
        else:
            t.fivexx_outside.append(f"{status} {what}")


async def send_sms(c: httpx.AsyncClient, t: Tally, key: str, body: str, to: str) -> None:
    """POST one SMS; during an outage a 503 is retried after its Retry-After,
    as a client should, so every message is eventually accepted."""
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": body}
    for _ in range(60):
        t.sent += 1
        try:
            r = await c.post("/messages/sms", json={"from": FROM, "to": to, "message": body},
                             headers=headers)
        except httpx.HTTPError as exc:
            classify(t, 599, f"POST /messages/sms: {type(exc).__name__}")
            await asyncio.sleep(1.0)
            continue
        classify(t, r.status_code, f"POST /messages/sms: {r.text[:80]}")
        if r.status_code in (200, 201):
            t.accepted[body] = r.json()["id"]
            return
        if r.status_code in (503, 409):  # 409: the same key still in progress
            await asyncio.sleep(min(5.0, float(r.headers.get("Retry-After", "1"))) / 5)
            continue
        raise RuntimeError(f"SMS refused: {r.status_code} {r.text}")
    raise RuntimeError(f"SMS {body} never accepted")


async def burst(c: httpx.AsyncClient, t: Tally, key: str, prefix: str, count: int,
                rate: float) -> None:
    tasks = []
    for i in range(count):
        tasks.append(asyncio.create_task(
            send_sms(c, t, key, f"{prefix}-{i:05d}", f"+46736{i % 10000:04d}99"[:12])))
        await asyncio.sleep(1.0 / rate)
    await asyncio.gather(*tasks)


class Dispatcher:
    """The one dispatcher, killed and started again under the same name (its
    restart closes what its killed run left open)."""

    def __init__(self, t: Tally) -> None:
        self.t = t
        self.proc = stack.start_dispatcher("faults", ready="sms: connected")

    def kill_and_restart(self) -> None:
        if not self.proc.alive():
            self.t.exited.append(f"dispatcher exited by itself:\n{self.proc.log()[-2000:]}")
        self.proc.signal(signal.SIGKILL)
        self.proc.wait()
        self.proc.stop()
        self.t.faults["dispatcher SIGKILL"] += 1
        self.proc = stack.start_dispatcher("faults", ready="sms: connected")


HOSTILE: list[tuple[str, str, dict[str, str], bytes]] = [
    # (method, path, extra headers, body); `K` in a header value is the key.
    ("GET", "/messages/sms/" + "9" * 5000, {}, b""),
    ("GET", "/messages/sms?per_page=" + "9" * 5000, {}, b""),
    ("GET", "/messages/sms?before=" + "9" * 4400, {}, b""),
    ("GET", "/messages/sms?per_page=-1", {}, b""),
    ("GET", "/messages/voice/-1", {}, b""),
    ("GET", "/webhooks/" + "1" * 30, {}, b""),
    ("POST", "/messages/sms", {"content-type": "text/plain"}, b'{"from":"+46736265400"}'),
    ("POST", "/messages/sms", {"content-type": "application/json"},
     '{"from":"+46736265400","to":"+46736265449","message":"x"}'.encode("utf-16")),
    ("POST", "/messages/sms", {},
     b'{"from":"+46736265400","to":"+46736265449","message":"a","message":"b"}'),
    ("POST", "/messages/sms", {}, b'{"from":"+46736265400","to":"+1","message":"x"}'),
    ("POST", "/messages/sms", {}, b'{"from":"+46736265400","to":"0046736","message":"x"}'),
    ("POST", "/messages/sms", {}, b'{"from":"+46736265400","to":"+4673626544' + b"9" * 500
     + b'","message":"x"}'),
    ("POST", "/messages/sms", {}, b'{"from":"+46736265400","to":"+46736265449","message":"'
     + b"x" * 100_000 + b'"}'),
    ("POST", "/messages/sms", {}, b'{"from":"+46736265400","to":"+46736265449","message":"x",'
     b'"repeat":' + b"9" * 5000 + b"}"),
    ("POST", "/messages/sms", {}, b'{"from":"+46736265400","to":"+46736265449","message":"x",'
     b'"repeat":1e308}'),
    ("POST", "/messages/sms", {}, b'{"from":"+46736265400","to":"+46736265449",'
     b'"message":"\\ud800"}'),
    ("POST", "/messages/sms", {}, b"[" * 10_000 + b"]" * 10_000),
    ("POST", "/messages/sms", {}, b'{"from": null, "to": [], "message": {}}'),
    ("POST", "/messages/sms", {}, b"\xff\xfe\x00garbage"),
    ("POST", "/messages/sms", {}, b""),
    ("POST", "/messages/voice", {}, b'{"from":"+46736265400","to":"+46736265449",'
     b'"file":"../../etc/passwd"}'),
    ("POST", "/messages/voice", {}, b'{"from":"+46736265400","to":"+46736265449",'
     b'"file":"tone.wav","retries":' + b"9" * 400 + b"}"),
    ("PUT", "/files/%2e%2e%2fpasswd", {"content-type": "audio/wav"}, b"RIFF"),
    ("PUT", "/files/..%2f..%2fx.wav", {"content-type": "audio/wav"}, b"RIFF"),
    ("PUT", "/files/x.wav", {"content-type": "audio/wav"}, b"RIFF\x00\x00\x00\x00WAVE"),
    ("PUT", "/files/" + "a" * 5000 + ".wav", {"content-type": "audio/wav"}, b"RIFF"),
    ("GET", "/files/%00", {}, b""),
    ("GET", "/files/..%5c..%5cwin.ini", {}, b""),
    ("DELETE", "/messages/sms/0", {}, b""),
    ("PATCH", "/messages/sms", {}, b"{}"),
    ("POST", "/webhooks", {}, b'{"url":"http://169.254.169.254/latest","events":["*"]}'),
    ("POST", "/webhooks", {}, b'{"url":"file:///etc/passwd"}'),
    ("GET", "/l/" + "A" * 5000, {"authorization": ""}, b""),
    ("GET", "/l/%00%ff", {"authorization": ""}, b""),
    # Bad authentication.
    ("GET", "/messages/sms", {"authorization": ""}, b""),
    ("GET", "/messages/sms", {"authorization": "Bearer"}, b""),
    ("GET", "/messages/sms", {"authorization": "Bearer amv_" + "x" * 43}, b""),
    ("GET", "/messages/sms", {"authorization": "Bearer " + "x" * 10_000}, b""),
    ("GET", "/messages/sms", {"authorization": "Basic Zm9vOmJhcg=="}, b""),
    ("GET", "/messages/sms", {"authorization": "Bearer K\x00"}, b""),
    ("GET", "/messages/sms", {"authorization": "bearer K K"}, b""),
]


async def hostile(c: httpx.AsyncClient, t: Tally, key: str) -> None:
    for method, path, extra, body in HOSTILE:
        headers = {"authorization": f"Bearer {key}", "content-type": "application/json",
                   **{k: v.replace("K", key) for k, v in extra.items()}}
        headers = {k: v for k, v in headers.items() if v}
        try:
            r = await c.request(method, path, content=body, headers=headers, timeout=10)
            status = r.status_code
        except httpx.HTTPError as exc:
            stack.say(f"hostile input not answered: {method} {path[:40]}: {exc}")
            t.hostile[f"no answer ({type(exc).__name__})"] += 1
            continue
        t.hostile[f"{status // 100}xx"] += 1
        if status < 300:
            stack.say(f"hostile input accepted ({status}): {method} {path[:40]} {body[:60]!r}")
        classify(t, status, f"hostile {method} {path[:40]}")


# The fault suite's API runs with short deadlines (see main) so slow clients
# are cut in seconds; the defaults are 10 s.
SLOW_DEADLINE = 2.0
GUESSES = 40


async def slow_clients(t: Tally, key: str) -> None:
    """Clients that say nothing, trickle their headers, or send a body shorter
    than they declared: each must be answered 408 and closed within the
    deadline (plus a margin), whatever the client keeps doing."""
    host, port = stack.API.removeprefix("http://").split(":")

    async def one(first: bytes, trickle: bytes) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        started = time.monotonic()
        answer = asyncio.ensure_future(reader.read())
        try:
            writer.write(first)
            while not answer.done() and time.monotonic() - started < 4 * SLOW_DEADLINE:
                if trickle:
                    writer.write(trickle)
                with contextlib.suppress(OSError):
                    await writer.drain()
                await asyncio.sleep(0.2)
            data = await asyncio.wait_for(answer, SLOW_DEADLINE)
            took = time.monotonic() - started
            status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/1.1 ") else "?"
            t.slow[f"{status} in {took:.1f} s" if status == "408" else f"{status} (not 408)"] += 1
        except (TimeoutError, OSError) as exc:
            t.slow[f"still open ({type(exc).__name__})"] += 1
        finally:
            answer.cancel()
            writer.close()

    # Authenticated: the API reads a body only after the key is checked.
    head = (b"POST /messages/sms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + key.encode() + b"\r\nContent-Length: 1000\r\n\r\n")
    await asyncio.gather(
        one(b"", b""),  # silent
        one(b"GET /healthz HTTP/1.1\r\n", b"X"),  # headers at 5 bytes/s
        one(head + b'{"from":', b""),  # a body shorter than declared
        one(head, b"x"))  # a body at 5 bytes/s


async def guessing(c: httpx.AsyncClient, t: Tally) -> None:
    """Wrong keys from one address as fast as they are answered: 401 for the
    burst, then 429 without a database query."""
    for n in range(GUESSES):
        r = await c.get("/messages/sms", headers={"authorization": f"Bearer amv_guess{n}"})
        t.guesses[r.status_code] += 1
        classify(t, r.status_code, "guess")


async def pg_restarts(cluster: Cluster, t: Tally, count: int, down: float) -> None:
    for _ in range(count):
        await asyncio.sleep(2.0)
        t.outage = True
        await asyncio.to_thread(cluster.stop, "fast")
        t.faults["PostgreSQL restart"] += 1
        await asyncio.sleep(down)
        await asyncio.to_thread(cluster.start)
        await asyncio.sleep(1.0)  # answers already in flight when it returned
        t.outage = False


async def asterisk_kills(t: Tally, key: str, c: httpx.AsyncClient, calls: int) -> list[int]:
    """Voice messages (retries 0): half placed, the gateway Asterisk SIGKILLed
    while they ring or play, the other half sent while it is down, then it is
    started again; returns their ids."""
    gateway = instances(SandboxSettings.from_env())["gateway"]
    auth = {"Authorization": f"Bearer {key}"}

    async def post(i: int) -> int:
        r = await c.post("/messages/voice", json={
            "from": FROM, "to": f"+4673660{i:04d}", "file": "tone.wav", "retries": 0},
            headers=auth)
        classify(t, r.status_code, "POST /messages/voice")
        return int(r.json()["id"])

    ids = [await post(i) for i in range(calls // 2)]

    async def calling() -> bool:
        r = await c.get(f"/messages/voice/{ids[-1]}", headers=auth)
        return bool(r.json()["status"] == "calling")

    await wait_for(calling, 20, what="a call in progress")
    pid = gateway.pid()
    if pid:
        os.kill(pid, signal.SIGKILL)
        t.faults["gateway Asterisk SIGKILL"] += 1
        await asyncio.to_thread(stack.wait_until, lambda: gateway.pid() is None, 20,
                                "the gateway Asterisk to go")
        ids += [await post(i) for i in range(calls // 2, calls)]
        await asyncio.sleep(2.0)
        await asyncio.to_thread(gateway.start)
    return ids


async def settle(pool: Any, t: Tally, voice_ids: list[int], timeout: float) -> None:
    """Wait until every accepted SMS and every voice message is final."""
    ids = list(t.accepted.values())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        open_sms = await pool.fetchval(
            "SELECT count(*) FROM sms_message_view WHERE id = ANY($1)"
            " AND status IN ('queued', 'sending', 'scheduled')", ids)
        open_voice = await pool.fetchval(
            "SELECT count(*) FROM voice_messages WHERE id = ANY($1) AND finished_at IS NULL",
            voice_ids)
        if not open_sms and not open_voice:
            return
        await asyncio.sleep(1.0)
    stack.say(f"not settled after {timeout:.0f} s: {open_sms} SMS, {open_voice} voice open")


async def run(args: argparse.Namespace, cluster: Cluster, key: str,
              api: stack.Proc) -> tuple[list[tuple[str, str]], bool]:
    import asyncpg

    t = Tally()
    started = time.monotonic()
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=stack.API, timeout=30, limits=limits) as c:
        r = await c.put("/files/tone.wav", content=tone_wav(seconds=2.0),
                        headers={"Authorization": f"Bearer {key}"})
        if r.status_code not in (200, 201):
            raise stack.SetupError(f"upload failed: {r.status_code} {r.text}")
        d = Dispatcher(t)
        try:
            # 1. SIGKILL loop of the dispatcher during a burst.
            stack.say(f"phase 1: {args.sms} SMS while the dispatcher is SIGKILLed "
                      f"{args.kills} times")
            sending = asyncio.create_task(burst(c, t, key, "kill", args.sms, args.rate))
            for _ in range(args.kills):
                await asyncio.sleep(args.sms / args.rate / (args.kills + 1))
                await asyncio.to_thread(d.kill_and_restart)
            await sending
            # 2. PostgreSQL restarted under load.
            stack.say(f"phase 2: {args.sms} SMS while PostgreSQL restarts {args.restarts} "
                      "times")
            sending = asyncio.create_task(burst(c, t, key, "pg", args.sms, args.rate))
            await pg_restarts(cluster, t, args.restarts, args.down)
            await sending
            # 3. The gateway Asterisk killed during calls.
            stack.say(f"phase 3: {args.calls} calls while the gateway Asterisk is SIGKILLed")
            voice_ids = await asterisk_kills(t, key, c, args.calls)
            # 4. Hostile input.
            stack.say(f"phase 4: {len(HOSTILE)} hostile requests, 4 slow clients, "
                      f"{GUESSES} wrong keys")
            await hostile(c, t, key)
            await slow_clients(t, key)
            await guessing(c, t)
            pool = await asyncpg.create_pool(DB_URL, min_size=1, max_size=2)
            try:
                await settle(pool, t, voice_ids, args.settle)
                rows = await pool.fetch(
                    """SELECT m.id, m.body,
                              count(a.*) FILTER (WHERE a.outcome = 'unknown') AS unknown
                       FROM sms_messages m LEFT JOIN sms_attempts a ON a.message_id = m.id
                       WHERE m.id = ANY($1) GROUP BY m.id""", list(t.accepted.values()))
                voice = await pool.fetch(
                    """SELECT m.id, m.outcome, m.attempts_made,
                              count(a.*) FILTER (WHERE a.detail LIKE 'not placed:%')
                                  AS not_placed
                       FROM voice_messages m LEFT JOIN voice_attempts a ON a.message_id = m.id
                       WHERE m.id = ANY($1) GROUP BY m.id""", voice_ids)
            finally:
                await pool.close()
            if not d.proc.alive():
                t.exited.append(f"dispatcher:\n{d.proc.log()[-2000:]}")
        finally:
            d.proc.stop()
    if not api.alive():
        t.exited.append(f"API:\n{api.log()[-2000:]}")
    elapsed = time.monotonic() - started

    got = collections.Counter(m["body"] for m in stack_received())
    bodies = {r["body"]: r for r in rows}
    lost = [b for b in t.accepted if got[b] == 0]
    dupes = [b for b in t.accepted if got[b] > 1]
    unrecorded = [b for b in dupes if bodies[b]["unknown"] < got[b] - 1]
    voice_open = [v["id"] for v in voice if v["outcome"] is None]
    voice_outcomes = collections.Counter(v["outcome"] for v in voice)
    waited = sum(1 for v in voice if v["not_placed"])
    fivexx_in = ", ".join(f"{k}: {v}" for k, v in sorted(t.fivexx_inside.items())) or "none"
    non503_in = sum(v for k, v in t.fivexx_inside.items() if k != 503)
    rows_out = [
        ("load held", f"{len(t.accepted)} SMS accepted of {t.sent} requests in {elapsed:.0f} s "
                      f"(offered at {args.rate:g}/s), {len(voice_ids)} voice messages"),
        ("faults injected", ", ".join(f"{k} x{v}" for k, v in sorted(t.faults.items()))),
        ("hostile inputs tried", f"{len(HOSTILE)}: " + ", ".join(
            f"{k} {v}" for k, v in sorted(t.hostile.items()))),
        ("slow clients (each 408, closed)", ", ".join(
            f"{k}: {v}" for k, v in sorted(t.slow.items()))),
        ("wrong keys from one address", ", ".join(
            f"{k} x{v}" for k, v in sorted(t.guesses.items()))),
        ("answers by class", ", ".join(f"{k} {v}" for k, v in sorted(t.statuses.items()))),
        ("messages lost (must be 0)", f"{len(lost) + len(voice_open)}"
                                      f" ({len(lost)} SMS, {len(voice_open)} voice not final)"),
        ("duplicates", f"{len(dupes)} (recorded as unknown: {len(dupes) - len(unrecorded)})"),
        ("duplicates not recorded as unknown (must be 0)", str(len(unrecorded))),
        ("5xx outside the DB outage (must be 0)", str(len(t.fivexx_outside))),
        ("5xx inside the DB outage (503 only)", fivexx_in),
        ("5xx other than 503 inside it (must be 0)", str(non503_in)),
        ("processes that exited (must be 0)", str(len(t.exited))),
        ("calls", ", ".join(f"{k} {v}" for k, v in sorted(voice_outcomes.items(), key=str))
         + f"; {waited} waited for Asterisk (not placed, not counted)"),
    ]
    for line in t.fivexx_outside[:10] + t.exited + [f"lost: {b}" for b in lost[:10]]:
        stack.say(line)
    slow_ok = sum(v for k, v in t.slow.items() if k.startswith("408")) == 4
    ok = not (lost or voice_open or unrecorded or t.fivexx_outside or non503_in or t.exited
              or not slow_ok or not t.guesses[429])
    return rows_out, ok


def stack_received() -> list[dict[str, Any]]:
    from sandbox.carrier_logs import received_sms

    return received_sms(instances(SandboxSettings.from_env())["carrier"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sms", type=int, default=400, help="SMS per phase (2 phases)")
    ap.add_argument("--rate", type=float, default=40.0, help="SMS offered per second")
    ap.add_argument("--kills", type=int, default=5, help="dispatcher SIGKILLs")
    ap.add_argument("--restarts", type=int, default=3, help="PostgreSQL restarts")
    ap.add_argument("--down", type=float, default=3.0, help="seconds PostgreSQL stays down")
    ap.add_argument("--calls", type=int, default=8, help="voice messages in phase 3")
    ap.add_argument("--settle", type=float, default=120.0, help="seconds to wait for the end")
    args = ap.parse_args()
    if not (10 <= args.sms <= 5000 and 1 <= args.rate <= 500 and 0 <= args.kills <= 50
            and 0 <= args.restarts <= 20 and 2 <= args.calls <= 50):
        ap.error("--sms 10..5000, --rate 1..500, --kills 0..50, --restarts 0..20, "
                 "--calls 2..50")
    os.environ["AMIVONO_DATABASE_URL"] = DB_URL
    os.environ["AMIVONO_SENDER_POLICY"] = "any"
    with stack.cleanup_on_exit() as st:
        stack.say(f"PostgreSQL cluster of our own on port {PG_PORT}")
        stack.wait_port_free(PG_PORT, "PostgreSQL", timeout=30)
        cluster = Cluster(PG_PORT).init()
        st.callback(cluster.remove)
        cluster.start()
        stack.fresh_database(DB_URL)
        st.callback(stack.asterisk_down)
        stack.say("starting both Asterisk instances (stack apart: ports +10000)")
        stack.asterisk_up()
        key = stack.new_key("faults")
        api = stack.start_api(
            AMIVONO_HTTP_HEADER_SECONDS=str(SLOW_DEADLINE),
            AMIVONO_HTTP_BODY_SECONDS=str(SLOW_DEADLINE))
        st.callback(api.stop)
        rows, ok = asyncio.run(run(args, cluster, key, api))
        stack.report.print_block("Fault suite (bash bench/run.sh faults)", rows, [
            "API and dispatcher as separate processes, both real Asterisks, loopback only",
            f"PostgreSQL: a cluster of the suite's own (initdb, port {PG_PORT}), "
            f"stopped (fast) for {args.down:g} s and started {args.restarts} times",
            "clients retry a 503 after its Retry-After; each SMS carries an Idempotency-Key",
        ])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
