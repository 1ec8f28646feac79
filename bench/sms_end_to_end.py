"""SMS end to end: accepted by the API (201) -> received by the carrier
simulator, beside Kannel: sendsms accepted (202) -> received by fakesmsc.

    .venv/bin/python bench/sms_end_to_end.py [--burst 2000] [--paced-rate 50]
                                             [--paced-seconds 10] [--no-second-dispatcher]
    .venv/bin/python bench/sms_end_to_end.py --gateways 2 [--burst 2000]
                                             [--node-sms-per-second 200]

Two phases for each side, with the same driver (bench/load.py `drive`,
32 keep-alive connections):
  burst  N messages posted as fast as they are accepted: the sustained rate at
         which they reach the far end (first to last arrival), and the latency
         of each (mostly time spent queued);
  paced  an open-loop rate well below capacity: the latency of the path itself.
Amivono's latency is from the 201 (client clock) to the carrier log's time
(`python -m service carrier messages`); Kannel's from the 202 to the moment
fakesmsc printed the message (stamped on arrival through a pipe).

With --gateways 2 it compares instead one gateway node with two, side by
side: the same burst through one node (a `gateways` row), then through two
(`amivono asterisk up --gateways 2`), each node paced at
--node-sms-per-second and the dispatcher's own ceiling lifted, with the CPU
each process used.

With --relay it compares Amivono with the pace lifted against the raw relay:
ARI `PUT /endpoints/sendMessage` through the same gateway and carrier
Asterisks from a minimal aiohttp client (32 in flight, no database, no
dispatcher), counted in the carrier's log. Amivono is measured twice, with
one dispatcher and with two: *end to end* (posted to the API while the
dispatchers send) and *queue drain* (the same number already accepted, then
the dispatchers started: the dispatcher's own rate), with the CPU per
delivered SMS summed over API, dispatchers and PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.server
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cpu import CpuMeter, postgres_pid, tree_cpu_seconds
from debian import ensure_debian_packages
from kannel import KANNEL_SENDSMS_PORT, Kannel
from load import Sent, drive
from report import collapsed_stacks, percentile, print_block, ratio
from stack import (
    API,
    DB_NAME,
    PROJECT_DIR,
    SPEC_FROM,
    SPEC_TO,
    WORK_DIR,
    amivono,
    asterisk_down,
    asterisk_pids,
    carrier_dir,
    cleanup_on_exit,
    gateway_stack,
    psql,
    say,
    start_dispatcher,
    wait_until,
)

CONCURRENCY = 32


class BlackHole:
    """A webhook endpoint that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


class Answering:
    """A webhook endpoint that answers 204 at once (to tell the cost of
    webhooks from the cost of a dead endpoint)."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the base class's name)
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()


def subscribe(key: str, url: str) -> int:
    request = urllib.request.Request(  # noqa: S310 (the bench's own API on loopback)
        f"{API}/webhooks", data=json.dumps({"url": url, "events": ["sms.sent"]}).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
        hook_id: int = json.loads(response.read())["id"]
        return hook_id


def unsubscribe(key: str, hook_id: int) -> None:
    request = urllib.request.Request(  # noqa: S310 (the bench's own API on loopback)
        f"{API}/webhooks/{hook_id}", method="DELETE",
        headers={"Authorization": f"Bearer {key}"})
    urllib.request.urlopen(request, timeout=10).close()  # noqa: S310 (loopback)


@dataclass
class Phase:
    name: str
    count: int
    accepted: int
    accept_seconds: float
    received: int
    arrival_seconds: float  # first to last arrival
    latencies: list[float]  # seconds, per message
    total_seconds: float  # first accept to last arrival
    cpu: dict[str, float] | None = None  # cores used, per process tree
    database: dict[str, float] | None = None  # WAL bytes, commits, rows written: whole phase
    cpu_seconds: float = 0.0  # the span `cpu` was measured over

    @property
    def sustained(self) -> float:
        return (self.received - 1) / self.arrival_seconds if self.arrival_seconds else 0.0

    @property
    def overall(self) -> float:
        return self.received / self.total_seconds if self.total_seconds else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000


def carrier_times() -> dict[int, float]:
    """message_id -> epoch seconds the carrier logged it, via the CLI."""
    out: dict[int, float] = {}
    for line in amivono("carrier", "messages").splitlines():
        sms = json.loads(line)
        if sms.get("message_id"):
            when = datetime.fromisoformat(sms["time"].replace("Z", "+00:00"))
            out[int(sms["message_id"])] = when.timestamp()
    return out


def carrier_count() -> int:
    log = carrier_dir() / "spool" / "sms-received.log"
    with log.open("rb") as f:
        return sum(1 for _ in f)


def amivono_phase(name: str, key: str, count: int, rate: float, base_count: int,
                  pids: dict[str, int]) -> Phase:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    reqs = [("POST", "/messages/sms",
             json.dumps({"from": SPEC_FROM, "to": SPEC_TO,
                         "message": f"bench {name} {i}"}).encode(), headers)
            for i in range(count)]
    say(f"Amivono {name}: {count} messages" + (f" at {rate:.0f}/s" if rate else ""))
    meter = CpuMeter(pids)
    db_before = database_counters()
    sent = asyncio.run(drive(API, reqs, CONCURRENCY, rate))
    ok = [s for s in sent if s.status == 201]
    accepted = {json.loads(s.body)["id"]: s.done_at for s in ok}
    deadline_s = 60 + count / 50
    wait_until(lambda: carrier_count() - base_count >= len(ok), deadline_s,
               f"the carrier to receive {len(ok)} messages", 0.5)
    cpu = meter.stop()
    db_after = database_counters()
    times = carrier_times()
    got = {mid: times[mid] for mid in accepted if mid in times}
    phase = make_phase(name, count, sent, accepted, got)
    phase.cpu = cpu
    phase.cpu_seconds = meter.elapsed
    phase.database = {k: db_after[k] - db_before[k] for k in db_before}
    return phase


def database_counters() -> dict[str, float]:
    """The whole server's WAL position and the bench database's commits and
    rows written (nothing else writes during a phase but the stack's own
    housekeeping, which is part of the cost)."""
    wal, commits, rows = psql(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0'), xact_commit, "
        "tup_inserted + tup_updated + tup_deleted FROM pg_stat_database "
        f"WHERE datname = '{DB_NAME}'").split("|")
    return {"wal_bytes": float(wal), "commits": float(commits), "rows": float(rows)}


def make_phase(name: str, count: int, sent: list[Sent], accepted: dict, got: dict) -> Phase:
    arrivals = sorted(got.values())
    first_accept = min(accepted.values()) if accepted else 0.0
    return Phase(
        name=name, count=count, accepted=len(accepted),
        accept_seconds=max(s.done_at for s in sent) - min(s.sent_at for s in sent),
        received=len(got),
        arrival_seconds=(arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0,
        latencies=[got[k] - accepted[k] for k in got],
        total_seconds=(arrivals[-1] - first_accept) if arrivals else 0.0)


def kannel_phase(kannel: Kannel, name: str, count: int, rate: float) -> Phase:
    meter = CpuMeter({p.name.removeprefix("kannel-"): p.pid for p in kannel.procs})
    texts = [f"bench-{name}-{i}" for i in range(count)]
    reqs = [("GET", kannel.sendsms_path(t), b"", {}) for t in texts]
    say(f"Kannel {name}: {count} messages" + (f" at {rate:.0f}/s" if rate else ""))
    start = len(kannel.received)
    base = f"http://127.0.0.1:{KANNEL_SENDSMS_PORT}"
    sent = asyncio.run(drive(base, reqs, CONCURRENCY, rate))
    accepted = {texts[s.index]: s.done_at for s in sent
                if s.status == 202 and s.body.startswith(b"0: Accepted")}
    wait_until(lambda: len(kannel.received) - start >= len(accepted), 60 + count / 50,
               f"fakesmsc to receive {len(accepted)} messages", 0.2)
    got = {}
    for when, line in kannel.received[start:]:
        text = line.rsplit(" ", 1)[-1]
        if text in accepted:
            got[text] = when
    phase = make_phase(name, count, sent, accepted, got)
    phase.cpu = meter.stop()
    return phase


def phase_rows(label: str, ph: Phase) -> list[tuple[str, str]]:
    return [
        (f"{label}", f"{ph.received}/{ph.count} received; accepted at "
                     f"{ph.accepted / ph.accept_seconds:,.0f}/s; delivered at "
                     f"{ph.sustained:,.0f}/s (first to last arrival), "
                     f"{ph.overall:,.0f}/s (first accept to last arrival)"),
        ("  latency p50 / p99", f"{ph.p(50):,.1f} / {ph.p(99):,.1f} ms"),
        ("  cores used", ", ".join(f"{k} {v:.2f}" for k, v in (ph.cpu or {}).items())),
        *([("  database per SMS", f"{ph.database['wal_bytes'] / ph.received:,.0f} B WAL, "
                                  f"{ph.database['commits'] / ph.received:.1f} commits, "
                                  f"{ph.database['rows'] / ph.received:.1f} rows written")]
          if ph.database and ph.received else []),
    ]


def node_in_use(name: str) -> None:
    wait_until(lambda: any(g["name"] == name and g["state"] == "connected" for g in
                           json.loads(amivono("gateways", "list", "--json"))),
               30, f"the dispatcher to use gateway {name}", 0.3)


def add_node(name: str, instance: str, per_second: float) -> None:
    from sandbox.instances import ari_url_of
    from sandbox.settings import SandboxSettings

    settings = SandboxSettings.from_env()
    amivono("gateways", "add", name, "--ari-url", ari_url_of(settings, instance),
            "--ari-user", settings.ari_user, "--ari-password", settings.ari_password,
            "--sms-per-second", f"{per_second:g}")


def nodes_side_by_side(burst: int, per_second: float) -> None:
    """The same burst through one gateway node, then through two."""
    with cleanup_on_exit() as stack:
        ensure_debian_packages("sms_end_to_end")
        key, api = gateway_stack(stack, "bench-nodes", gateways=2)
        add_node("n1", "gateway", per_second)
        # The dispatcher's own ceiling lifted: the nodes' paces are the limit.
        d1 = start_dispatcher("bench-nodes", AMIVONO_SMS_PER_SECOND="20000",
                              AMIVONO_SMS_CONCURRENCY="64")
        stack.callback(d1.stop)
        node_in_use("n1")
        pids = {"API": api.pid, "dispatcher": d1.pid, **asterisk_pids(gateways=2),
                "PostgreSQL": postgres_pid()}
        one = amivono_phase("burst-1-node", key, burst, 0.0, carrier_count(), pids)
        add_node("n2", "gateway2", per_second)
        node_in_use("n2")
        two = amivono_phase("burst-2-nodes", key, burst, 0.0, carrier_count(), pids)
        shares = amivono("gateways", "list", "--json")
        d1.stop()
        api.stop()
    rows = [("driver", f"{CONCURRENCY} keep-alive HTTP/1.1 connections (bench/load.py drive)"),
            ("node pace", f"{per_second:g} SMS/s each (--node-sms-per-second)")]
    rows += phase_rows(f"burst of {burst}, 1 gateway node", one)
    rows += phase_rows(f"burst of {burst}, 2 gateway nodes", two)
    rows += [("RATIO 2 nodes / 1 node delivered/s", ratio(two.sustained, one.sustained)),
             ("RATIO 2 nodes / 1 node p50 latency", ratio(two.p(50), one.p(50)))]
    notes = ["one dispatcher (AMIVONO_SMS_PER_SECOND=20000, AMIVONO_SMS_CONCURRENCY=64), one "
             "API process; nodes `gateway` and `gateway2` of `amivono asterisk up --gateways 2`",
             "gateways at the end: " + "; ".join(
                 f"{g['name']} {g['state']}" for g in json.loads(shares)),
             "cores used: CPU of each process tree over the phase ('machine': everything, "
             "of 2.00)"]
    print_block("SMS end to end, one gateway node against two (bench/sms_end_to_end.py "
                "--gateways 2)", rows, notes)


RELAY_CONCURRENCY = 32
RELAY_ID_BASE = 1_000_000_000  # message ids of the raw relay's SMS: above any row's


async def _relay(count: int, first_id: int) -> tuple[float, float]:
    """`count` sendMessage requests, RELAY_CONCURRENCY in flight; returns the
    (start, end) of the sending on this clock."""
    import aiohttp

    from service.settings import Settings

    s = Settings.from_env()
    token = base64.b64encode(f"{s.ari_user}:{s.ari_password}".encode()).decode()
    url = f"{s.ari_url}/endpoints/sendMessage"
    to = f"pjsip:{s.trunk_endpoint}/sip:{SPEC_TO}@{s.trunk_host}:{s.trunk_port}"
    todo = iter(range(count))
    async with aiohttp.ClientSession(
            headers={"Authorization": f"Basic {token}"},
            connector=aiohttp.TCPConnector(limit=RELAY_CONCURRENCY)) as session:
        async def worker() -> None:
            for i in todo:
                params = {"to": to, "from": f"sip:{SPEC_FROM}@{s.trunk_host}",
                          "body": f"bench relay {i}"}
                body = {"variables": {"X-Amivono-Message-Id": str(first_id + i),
                                      "X-Amivono-Ref": str(first_id + i)}}
                async with session.put(url, params=params, json=body) as response:
                    await response.read()
                    if response.status != 202:
                        raise RuntimeError(f"sendMessage: {response.status}")

        start = time.time()
        await asyncio.gather(*(worker() for _ in range(RELAY_CONCURRENCY)))
        return start, time.time()


def relay_phase(name: str, count: int, pids: dict[str, int]) -> Phase:
    say(f"raw relay {name}: {count} sendMessage, {RELAY_CONCURRENCY} in flight")
    _relay_runs.append(name)
    first_id = RELAY_ID_BASE + len(_relay_runs) * 100_000  # ids of its own: --burst <= 20000
    base = carrier_count()
    meter = CpuMeter(pids)
    start, end = asyncio.run(_relay(count, first_id))
    wait_until(lambda: carrier_count() - base >= count, 60 + count / 50,
               f"the carrier to receive {count} relayed messages", 0.2)
    cpu = meter.stop()
    got = {mid: t for mid, t in carrier_times().items() if first_id <= mid < first_id + count}
    accepted = dict.fromkeys(got, start)
    sent = [Sent(index=0, status=202, body=b"", sent_at=start, done_at=end)]
    phase = make_phase(name, count, sent, accepted, got)
    phase.cpu = cpu
    phase.cpu_seconds = meter.elapsed
    return phase


_relay_runs: list[str] = []


def drain_phase(name: str, key: str, count: int, dispatchers: int,
                pids: dict[str, int], env: dict[str, str], profile: str = "") -> Phase:
    """`count` SMS accepted with no dispatcher running, then `dispatchers`
    started: how fast the queue drains to the carrier."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    reqs = [("POST", "/messages/sms",
             json.dumps({"from": SPEC_FROM, "to": SPEC_TO,
                         "message": f"bench {name} {i}"}).encode(), headers)
            for i in range(count)]
    say(f"Amivono {name}: {count} messages queued, then {dispatchers} dispatcher(s)")
    sent = asyncio.run(drive(API, reqs, CONCURRENCY, 0.0))
    ok = [s for s in sent if s.status == 201]
    base = carrier_count()
    procs = []
    meter = CpuMeter(pids)
    started = time.time()
    for n in range(dispatchers):
        d = start_dispatcher(f"bench-{name}-{n + 1}", **env)
        procs.append(d)
        # From when it is up: its start-up (imports) is not the cost of a send.
        meter.before[f"dispatcher {n + 1}"] = tree_cpu_seconds(d.pid)
        meter.pids[f"dispatcher {n + 1}"] = d.pid
    spy = None
    if profile:  # sampling, blocking mode for whole stacks, until the queue is drained
        spy = subprocess.Popen([str(PROJECT_DIR / ".venv" / "bin" / "py-spy"), "record",
                                "-r", "200", "-p", str(procs[0].pid), "-f", "raw",
                                "-o", profile], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: carrier_count() - base >= len(ok), 60 + count / 50,
                   f"the carrier to receive {len(ok)} messages", 0.2)
        cpu = meter.stop()
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            spy.wait(60)
        for d in procs:
            d.stop()
    times = carrier_times()
    accepted = {json.loads(s.body)["id"]: started for s in ok}
    got = {mid: times[mid] for mid in accepted if mid in times}
    phase = make_phase(name, count, sent, accepted, got)
    phase.cpu = cpu
    phase.cpu_seconds = meter.elapsed
    return phase


def profile_top(path: str, top: int = 12) -> list[str]:
    """From py-spy's collapsed stacks: the functions of our code (service/)
    and of the libraries under them with the largest inclusive share, and
    the largest own-time (leaf) frames."""
    samples = 0
    inclusive: dict[str, int] = {}
    leaves: dict[str, int] = {}
    for frames, n in collapsed_stacks(path):
        samples += n
        for frame in set(frames):
            if "/service/" in frame or "(asyncpg/" in frame or "(aiohttp/" in frame:
                name = frame.split(" (")[0] + " (" + frame.split("(")[-1].split("/")[-1]
                inclusive[name] = inclusive.get(name, 0) + n
        leaves[frames[-1]] = leaves.get(frames[-1], 0) + n
    if not samples:
        return ["(no samples)"]
    out = [f"{samples} samples (200/s, dispatcher 1; idle time not sampled)",
           "inclusive, our code and asyncpg/aiohttp:"]
    out += [f"  {100 * n / samples:5.1f}%  {f}" for f, n in
            sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]]
    out += [f"own time (top {top}):"]
    out += [f"  {100 * n / samples:5.1f}%  {f}" for f, n in
            sorted(leaves.items(), key=lambda kv: -kv[1])[:top]]
    return out


def cpu_ms_per_sms(ph: Phase, parts: tuple[str, ...] = ("API", "dispatcher", "PostgreSQL")
                   ) -> str:
    """Milliseconds of CPU per delivered SMS, summed over `parts` (every
    'dispatcher N' counts as a dispatcher), from the cores used over the phase."""
    if not ph.cpu or not ph.received:
        return "-"
    each = {k: v * ph.cpu_seconds * 1000 / ph.received for k, v in ph.cpu.items()
            if k in parts or k.split(" ")[0] in parts}
    return (f"{sum(each.values()):.2f} ms (" + ", ".join(f"{k} {v:.2f}" for k, v in each.items())
            + ")")


def rss_mb(pid: int) -> float:
    """Resident memory of one process (not its children), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_over_load(key: str, seconds: float, rate: float, api_pid: int,
                  env: dict[str, str]) -> list[tuple[str, str]]:
    """RSS of the API and of a dispatcher under `rate` SMS/s for `seconds`:
    sampled every second; growth from the sample at 5 s to the last."""
    d = start_dispatcher("bench-rss", **env)
    samples: dict[str, list[float]] = {"API": [], "dispatcher": []}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(1.0):
            samples["API"].append(rss_mb(api_pid))
            samples["dispatcher"].append(rss_mb(d.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        amivono_phase("rss", key, int(seconds * rate), rate, carrier_count(),
                      {"API": api_pid, "dispatcher": d.pid})
    finally:
        done.set()
        sampler.join()
        d.stop()
    rows = []
    for name, values in samples.items():
        if len(values) > 6:
            start, end = values[4], values[-1]
            growth = 100 * (end / start - 1)
            marks = [t for t in (5, 15, 30, 60, 120, 240, 480) if t < len(values)]
            path = ", ".join(f"{values[t - 1]:.1f} at {t} s" for t in marks)
            rows.append((f"  RSS of the {name}", f"{start:.1f} MB at 5 s -> {end:.1f} MB at "
                         f"{len(values)} s (max {max(values):.1f}): {growth:+.1f}% "
                         f"({path})"))
    return rows


def relay_side_by_side(burst: int, sms_per_second: str, concurrency: str,
                       profile: bool, rss_seconds: float) -> None:
    """Amivono with the pace lifted against the raw relay, in one run."""
    env = {"AMIVONO_SMS_PER_SECOND": sms_per_second, "AMIVONO_SMS_CONCURRENCY": concurrency}
    with cleanup_on_exit() as stack:
        ensure_debian_packages("sms_end_to_end")
        key, api = gateway_stack(stack, "bench-relay")
        base_pids = {"API": api.pid, **asterisk_pids(), "PostgreSQL": postgres_pid()}
        relay1 = relay_phase("relay", burst, base_pids)
        d1 = start_dispatcher("bench-relay-d1", **env)
        stack.callback(d1.stop)
        e2e1 = amivono_phase("e2e-1", key, burst, 0.0, carrier_count(),
                             {**base_pids, "dispatcher": d1.pid})
        d2 = start_dispatcher("bench-relay-d2", **env)
        stack.callback(d2.stop)
        e2e2 = amivono_phase("e2e-2", key, burst, 0.0, carrier_count(),
                             {**base_pids, "dispatcher": d1.pid, "dispatcher 2": d2.pid})
        d2.stop()
        d1.stop()
        drain1 = drain_phase("drain-1", key, burst, 1, dict(base_pids), env)
        drain2 = drain_phase("drain-2", key, burst, 2, dict(base_pids), env)
        relay2 = relay_phase("relay-again", burst, base_pids)
        rss_rows: list[tuple[str, str]] = []
        if rss_seconds:
            say(f"RSS of the API and a dispatcher over {rss_seconds:g} s at 200 SMS/s")
            rss_rows = [(f"memory over {rss_seconds:g} s at 200 SMS/s (paced, API + 1 "
                         "dispatcher)", "")] + rss_over_load(key, rss_seconds, 200.0, api.pid,
                                                               env)
        profile_lines: list[str] = []
        if profile:
            out = str(WORK_DIR / "profile-dispatcher.txt")
            say(f"profiling one dispatcher draining {burst} (py-spy, {out})")
            drain_phase("drain-profiled", key, burst, 1, dict(base_pids), env, out)
            profile_lines = profile_top(out)
        api.stop()
    relay = (relay1.sustained + relay2.sustained) / 2
    rows = [("driver", f"API: {CONCURRENCY} keep-alive HTTP/1.1 connections (bench/load.py "
                       f"drive); raw relay: aiohttp, {RELAY_CONCURRENCY} sendMessage in flight"),
            ("pace", f"AMIVONO_SMS_PER_SECOND={sms_per_second} (also the gateway node's), "
                     f"AMIVONO_SMS_CONCURRENCY={concurrency}")]
    rows += phase_rows(f"raw relay, {burst} sendMessage (first)", relay1)
    rows += phase_rows(f"raw relay, {burst} sendMessage (last)", relay2)
    for label, ph in ((f"Amivono end to end, burst of {burst}, 1 dispatcher", e2e1),
                      (f"Amivono end to end, burst of {burst}, 2 dispatchers", e2e2),
                      (f"Amivono queue drain, {burst} queued, 1 dispatcher", drain1),
                      (f"Amivono queue drain, {burst} queued, 2 dispatchers", drain2)):
        rows += phase_rows(label, ph)
        rows.append(("  CPU per delivered SMS", cpu_ms_per_sms(ph)))
    rows += [
        ("raw relay delivered/s (mean of the two)", f"{relay:,.0f}/s"),
        ("RATIO end to end / raw relay, 1 dispatcher", ratio(e2e1.sustained, relay)),
        ("RATIO end to end / raw relay, 2 dispatchers", ratio(e2e2.sustained, relay)),
        ("RATIO queue drain / raw relay, 1 dispatcher", ratio(drain1.sustained, relay)),
        ("RATIO queue drain / raw relay, 2 dispatchers", ratio(drain2.sustained, relay)),
        *rss_rows,
    ]
    notes = ["delivered/s: first to last arrival in the carrier's log (its ms times)",
             "end to end: posted to the API while the dispatchers send; queue drain: all "
             "accepted first, then the dispatchers started",
             "CPU per delivered SMS: API + dispatcher(s) + PostgreSQL process trees over the "
             "phase, divided by the SMS delivered",
             "cores used: CPU of each process tree over the phase ('machine': everything, "
             "of 2.00)"]
    print_block("SMS end to end against the raw relay, pace lifted (bench/sms_end_to_end.py "
                "--relay)", rows, notes)
    if profile_lines:
        print("\npy-spy on one dispatcher draining the queue (a separate drain):")
        print("\n".join(profile_lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--burst", type=int, default=2000)
    ap.add_argument("--paced-rate", type=float, default=50.0)
    ap.add_argument("--paced-seconds", type=float, default=10.0)
    ap.add_argument("--no-second-dispatcher", action="store_true")
    ap.add_argument("--gateways", type=int, choices=[1, 2], default=1,
                    help="2: one gateway node against two, side by side (and nothing else)")
    ap.add_argument("--node-sms-per-second", type=float, default=200.0,
                    help="with --gateways 2: each node's pace (default 200)")
    ap.add_argument("--relay", action="store_true",
                    help="Amivono with the pace lifted against the raw ARI relay (and nothing "
                         "else)")
    ap.add_argument("--profile", action="store_true",
                    help="with --relay: also py-spy one dispatcher draining the queue")
    ap.add_argument("--rss-seconds", type=float, default=0.0,
                    help="with --relay: also the API's and a dispatcher's RSS over this many "
                         "seconds at 200 SMS/s (e.g. 60)")
    ap.add_argument("--sms-per-second", default="20000",
                    help="with --relay: AMIVONO_SMS_PER_SECOND (default 20000)")
    ap.add_argument("--sms-concurrency", default="32",
                    help="with --relay: AMIVONO_SMS_CONCURRENCY (default 32)")
    args = ap.parse_args()
    if not 100 <= args.burst <= 20000:
        ap.error("--burst must be 100 to 20000")
    if not (1 <= args.paced_rate <= 500 and 5 <= args.paced_seconds <= 60):
        ap.error("--paced-rate 1 to 500 and --paced-seconds 5 to 60")
    paced_count = int(args.paced_rate * args.paced_seconds)
    if args.relay:
        relay_side_by_side(args.burst, args.sms_per_second, args.sms_concurrency,
                           args.profile, args.rss_seconds)
        return
    if args.gateways == 2:
        if not 1 <= args.node_sms_per_second <= 5000:
            ap.error("--node-sms-per-second must be 1 to 5000")
        nodes_side_by_side(args.burst, args.node_sms_per_second)
        return

    with cleanup_on_exit() as stack:
        ensure_debian_packages("sms_end_to_end")
        key, api = gateway_stack(stack, "bench-e2e")
        d1 = start_dispatcher("bench-d1")
        stack.callback(d1.stop)

        pids = {"API": api.pid, "dispatcher": d1.pid, **asterisk_pids(),
                "PostgreSQL": postgres_pid()}
        received = carrier_count()
        a_paced = amivono_phase("paced", key, paced_count, args.paced_rate, received, pids)
        received = carrier_count()
        a_burst = amivono_phase("burst", key, args.burst, 0.0, received, pids)
        # The same burst with a webhook endpoint that never answers subscribed
        # to every send: its deliveries hang 15 s each and must not slow sends.
        hole = BlackHole()
        stack.callback(hole.close)
        hook_id = subscribe(key, hole.url)
        received = carrier_count()
        a_hole = amivono_phase("burst-blackhole", key, args.burst, 0.0, received, pids)
        unsubscribe(key, hook_id)
        hole.close()
        live = Answering()
        stack.callback(live.close)
        hook_id = subscribe(key, live.url)
        received = carrier_count()
        a_live = amivono_phase("burst-webhook", key, args.burst, 0.0, received, pids)
        unsubscribe(key, hook_id)
        live.close()
        a_burst2 = None
        if not args.no_second_dispatcher:
            d2 = start_dispatcher("bench-d2")
            stack.callback(d2.stop)
            received = carrier_count()
            a_burst2 = amivono_phase("burst2", key, args.burst, 0.0, received,
                                     {**pids, "dispatcher 2": d2.pid})
            d2.stop()
        d1.stop()
        api.stop()
        asterisk_down()

        kannel = Kannel()
        stack.callback(kannel.stop)
        kannel.start()
        k_paced = kannel_phase(kannel, "paced", paced_count, args.paced_rate)
        k_burst = kannel_phase(kannel, "burst", args.burst, 0.0)
        kannel.stop()

    rows = [("driver", f"{CONCURRENCY} keep-alive HTTP/1.1 connections (bench/load.py drive)")]
    rows += phase_rows(f"Amivono burst of {args.burst}, 1 dispatcher", a_burst)
    rows += phase_rows(f"Amivono burst of {args.burst}, 1 dispatcher, black-hole webhook",
                       a_hole)
    rows += phase_rows(f"Amivono burst of {args.burst}, 1 dispatcher, answering webhook",
                       a_live)
    if a_burst2 is not None:
        rows += phase_rows(f"Amivono burst of {args.burst}, 2 dispatchers", a_burst2)
    rows += phase_rows(f"Amivono paced {args.paced_rate:.0f}/s x {args.paced_seconds:.0f} s",
                       a_paced)
    rows += phase_rows(f"Kannel burst of {args.burst}", k_burst)
    rows += phase_rows(f"Kannel paced {args.paced_rate:.0f}/s x {args.paced_seconds:.0f} s",
                       k_paced)
    rows += [
        ("RATIO with/without a black-hole webhook (burst, 1 dispatcher)",
         ratio(a_hole.sustained, a_burst.sustained)),
        ("RATIO black-hole/answering webhook (burst, 1 dispatcher)",
         ratio(a_hole.sustained, a_live.sustained)),
        ("RATIO Amivono/Kannel delivered/s (burst, 1 dispatcher)",
         ratio(a_burst.sustained, k_burst.sustained)),
    ]
    if a_burst2 is not None:
        rows.append(("RATIO Amivono/Kannel delivered/s (burst, 2 dispatchers)",
                     ratio(a_burst2.sustained, k_burst.sustained)))
    rows += [
        ("RATIO Amivono/Kannel paced latency p50", ratio(a_paced.p(50), k_paced.p(50))),
        ("RATIO Amivono/Kannel paced latency p99", ratio(a_paced.p(99), k_paced.p(99))),
    ]
    notes = [
        "Amivono: `python -m service api` + `python -m service dispatcher` with default "
        "settings (AMIVONO_SMS_PER_SECOND=200 and AMIVONO_SMS_CONCURRENCY=32 per "
        "dispatcher), SIP MESSAGE over the trunk to the carrier Asterisk (digest auth)",
        "Kannel 1.4.5: smsbox sendsms -> bearerbox -> fake SMSC -> fakesmsc, no store",
        "the Kannel burst rate may be the driver's limit: compare it with its accept rate",
        "a negative Kannel latency: fakesmsc had the message before the client read the 202",
        "cores used: CPU of each process tree over the phase ('machine': everything, of 2.00)",
    ]
    print_block("SMS end to end (bench/sms_end_to_end.py)", rows, notes)


if __name__ == "__main__":
    started = time.monotonic()
    main()
    say(f"done in {time.monotonic() - started:.0f} s")
    sys.exit(0)
