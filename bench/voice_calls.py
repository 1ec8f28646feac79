"""Voice calls: completed calls/s and post-dial latency through the gateway and
carrier Asterisk instances, Amivono's dispatcher beside sipp driving the same
two Asterisks without it.

    .venv/bin/python bench/voice_calls.py [--calls 100] [--fast-calls 200]
                                          [--fast-rate 50] [--paced-rate 5]
                                          [--ramp 50,100,150,200,250,300]
                                          [--ramp-seconds 6] [--lifted-calls 400]
                                          [--paced50-seconds 6] [--profile]

Every call plays the same uploaded 1 s tone (850 Hz) from the gateway to the
carrier, which answers and records it.
  Amivono  POST /messages/voice -> dispatcher -> ARI originate -> trunk ->
           carrier answers -> gateway plays the tone -> hangs up.
  sipp     UAC (127.0.0.2) INVITE -> gateway context bench-sipp (bench/asterisk/,
           added after `asterisk up`) -> Dial() on the same trunk -> carrier
           answers -> gateway plays the tone (Dial U() subroutine) -> sipp gets
           200, ACKs and hangs up.
Completion time: the carrier's call log (`python -m service carrier calls`, the
end of each call). INVITE time at the carrier: its Asterisk messages.log, the
line "Executing [<number>@carrier-calls:1]" (the first dialplan step, right
after the authenticated INVITE is taken; ms resolution). Post-dial latency:
Amivono from the 201 (client clock), sipp from the moment it sent the INVITE
(logged by the scenario with gettimeofday).

Issue 12 adds: sipp's maximum completed calls/s from a rate ramp (each step
`--ramp-seconds` of calls at one rate, at most `--ramp-max-calls`; the ramp
stops when a step's completed rate does not rise by 5% over the best so far,
or when calls fail), Amivono with the pace lifted (AMIVONO_CALLS_PER_SECOND
`--lifted-rate`, AMIVONO_CALLS_PER_DISPATCHER and AMIVONO_CALLS_PER_TRUNK
`--lifted-calls`, as an operator would raise them) on a burst as long as
sipp's best step, and both open loop at `--paced50-rate` (50) calls/s for the
post-dial p50/p99 there.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cpu import CpuMeter, postgres_pid
from debian import ensure_debian_packages
from load import drive
from report import percentile, print_block, ratio
from sms_end_to_end import profile_top
from stack import (
    API,
    BENCH_DIR,
    BENCH_ENV,
    LOG_DIR,
    PROJECT_DIR,
    SPEC_FROM,
    WORK_DIR,
    SetupError,
    amivono,
    asterisk_pids,
    carrier_dir,
    cleanup_on_exit,
    gateway_stack,
    psql,
    say,
    start_dispatcher,
    wait_until,
)

CONCURRENCY = 16
TONE_SECONDS = 1.0
SIPP_PORT = 35080
SIPP_MEDIA_PORT = 36000


def tone_wav(freq: float = 850.0, seconds: float = TONE_SECONDS, rate: int = 8000) -> bytes:
    import numpy as np
    import soundfile

    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    soundfile.write(buf, 0.5 * np.sin(2 * np.pi * freq * t), rate, format="WAV",
                    subtype="PCM_16")
    return buf.getvalue()


@dataclass
class Result:
    name: str
    offered: int
    completed: int
    outcomes: dict[str, int]
    sustained: float  # completions/s, first to last call end
    overall: float  # completions/s, first start to last end
    post_dial: list[float]  # seconds: accepted (or INVITE sent) -> dialplan start at carrier
    cpu: dict[str, float]
    # Amivono only, seconds: the 201 -> its first attempt's claim (the
    # dispatcher woke and claimed it), and that claim -> the carrier's INVITE.
    to_claim: list[float] = field(default_factory=list)
    claim_to_invite: list[float] = field(default_factory=list)
    # Per Asterisk: its busiest thread's cores and name (one thread near 1.00
    # is a bottleneck however many cores are free).
    threads: dict[str, tuple[float, str]] = field(default_factory=dict)

    def p(self, q: float) -> float:
        return percentile(self.post_dial, q) * 1000


_EXECUTING = re.compile(
    r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})\].*Executing \[(\+\d+)@carrier-calls:1\]")


def messages_log() -> Path:
    return carrier_dir() / "log" / "messages.log"


def log_offset() -> int:
    """messages.log survives Asterisk restarts: a phase reads only what it added."""
    return messages_log().stat().st_size if messages_log().exists() else 0


def carrier_invites(offset: int) -> dict[str, float]:
    """number -> epoch of the carrier's first dialplan step for that call."""
    out: dict[str, float] = {}
    with messages_log().open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    for line in text.splitlines():
        match = _EXECUTING.match(line)
        if match:
            when = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f")
            out.setdefault(match.group(2), when.replace(tzinfo=UTC).timestamp())
    return out


def carrier_calls() -> dict[str, dict]:
    out = {}
    for line in amivono("carrier", "calls").splitlines():
        call = json.loads(line)
        call["end"] = datetime.fromisoformat(call["time"].replace("Z", "+00:00")).timestamp()
        out[call["to"]] = call
    return out


def calls_ended(numbers: list[str]) -> int:
    log = carrier_dir() / "spool" / "calls.log"
    wanted = set(numbers)
    return sum(1 for line in log.read_text().splitlines()
               if len(parts := line.split("|")) >= 7 and parts[2] in wanted)


def _thread_seconds(pid: int) -> dict[int, tuple[float, str]]:
    out: dict[int, tuple[float, str]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            raw = (task / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        out[int(task.name)] = ((int(fields[11]) + int(fields[12])) / tick,
                               raw[raw.index("(") + 1:raw.rindex(")")])
    return out


class ThreadMeter:
    """The busiest thread of each Asterisk over a span (cores, its name)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {k: v for k, v in pids.items() if k.endswith("Asterisk")}
        self.start = time.monotonic()
        self.before = {k: _thread_seconds(p) for k, p in self.pids.items()}

    def stop(self) -> dict[str, tuple[float, str]]:
        elapsed = time.monotonic() - self.start
        out = {}
        for k, pid in self.pids.items():
            after = _thread_seconds(pid)
            used = [((sec - self.before[k].get(tid, (0.0, ""))[0]) / elapsed, name)
                    for tid, (sec, name) in after.items()]
            out[k] = max(used, default=(0.0, "?"))
        return out


def settle_calls_ended(numbers: list[str], quiet: float = 3.0, most: float = 60.0) -> int:
    """Wait for the carrier's call log to hold every call, or to stop growing
    for `quiet` seconds (failed calls never reach it): how many it holds."""
    deadline = time.monotonic() + most
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        n = calls_ended(numbers)
        if n >= len(numbers):
            return n
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return n
        time.sleep(0.2)
    return last


def summarise(name: str, numbers: list[str], started: dict[str, float], first_start: float,
              completed_numbers: set[str], outcomes: dict[str, int],
              cpu: dict[str, float], offset: int) -> Result:
    calls = carrier_calls()
    invites = carrier_invites(offset)
    ends = sorted(calls[n]["end"] for n in completed_numbers if n in calls)
    return Result(
        name=name, offered=len(numbers), completed=len(completed_numbers), outcomes=outcomes,
        sustained=(len(ends) - 1) / (ends[-1] - ends[0]) if len(ends) > 1 else 0.0,
        overall=len(ends) / (ends[-1] - first_start) if ends else 0.0,
        post_dial=[invites[n] - started[n] for n in numbers if n in invites and n in started],
        cpu=cpu)


def amivono_phase(name: str, key: str, numbers: list[str], rate: float,
                  pids: dict[str, int], profile: str = "", spy_pid: int = 0) -> Result:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    reqs = [("POST", "/messages/voice", json.dumps(
        {"from": SPEC_FROM, "to": n, "file": "tone.wav"}).encode(), headers)
        for n in numbers]
    say(f"Amivono {name}: {len(numbers)} calls" + (f" at {rate:.0f}/s" if rate else ""))
    offset = log_offset()
    meter = CpuMeter(pids)
    threads = ThreadMeter(pids)
    spy = None
    if profile:  # sampling the dispatcher until its calls are finished
        spy = subprocess.Popen([str(PROJECT_DIR / ".venv" / "bin" / "py-spy"), "record",
                                "-r", "200", "-p", str(spy_pid), "-f", "raw", "-o", profile],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sent = asyncio.run(drive(API, reqs, CONCURRENCY, rate))
    bad = [s for s in sent if s.status != 201]
    if bad:
        raise SetupError(f"{len(bad)} voice POSTs failed: {bad[0].status} {bad[0].body[:300]}")
    ids = [json.loads(s.body)["id"] for s in sent]
    started = {numbers[s.index]: s.done_at for s in sent}
    id_list = ",".join(str(i) for i in ids)
    dsn = BENCH_ENV["AMIVONO_DATABASE_URL"]

    def finished() -> bool:
        return int(psql(f"SELECT count(*) FROM voice_messages WHERE id IN ({id_list}) "
                        "AND finished_at IS NOT NULL", dsn)) == len(ids)

    try:
        wait_until(finished, 60 + len(ids), f"{len(ids)} voice messages to finish", 0.5)
        settle_calls_ended(numbers)
        cpu = meter.stop()
        busiest = threads.stop()
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            spy.wait(60)
    rows = psql(f"SELECT to_number, outcome FROM voice_messages WHERE id IN ({id_list})", dsn)
    outcomes: dict[str, int] = {}
    completed = set()
    for line in rows.splitlines():
        number, outcome = line.split("|")
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if outcome == "completed":
            completed.add(number)
    result = summarise(name, numbers, started, min(started.values()), completed, outcomes,
                       cpu, offset)
    result.threads = busiest
    claims = psql("SELECT m.to_number, extract(epoch FROM min(a.started_at)) FROM voice_messages m "
                  f"JOIN voice_attempts a ON a.message_id = m.id WHERE m.id IN ({id_list}) "
                  "GROUP BY m.to_number", dsn)
    invites = carrier_invites(offset)
    for line in claims.splitlines():
        number, at = line.split("|")
        result.to_claim.append(float(at) - started[number])
        if number in invites:
            result.claim_to_invite.append(invites[number] - float(at))
    return result


class PgSampler:
    """What the bench database's backends are doing, sampled every 5 ms from
    pg_stat_activity (a poor man's profile of PostgreSQL: wall time, waits
    included): the statement's first line and its wait event."""

    def __init__(self) -> None:
        import threading

        self.counts: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(BENCH_ENV["AMIVONO_DATABASE_URL"])
        try:
            while not self._stop.is_set():
                rows = await conn.fetch(
                    "SELECT query, wait_event FROM pg_stat_activity WHERE datname = "
                    "current_database() AND state = 'active' AND pid <> pg_backend_pid()")
                self.samples += 1
                for row in rows:
                    first = next((ln.strip() for ln in row["query"].splitlines()
                                  if ln.strip() and not ln.strip().startswith("--")), "")
                    key = f"{first[:70]} [{row['wait_event'] or 'cpu'}]"
                    self.counts[key] = self.counts.get(key, 0) + 1
                await asyncio.sleep(0.005)
        finally:
            await conn.close()

    def stop(self, top: int = 12) -> list[str]:
        self._stop.set()
        self._thread.join(10)
        out = [f"PostgreSQL backends of the bench database, {self.samples} samples every "
               "5 ms: busy backends per sample, by statement [wait event]"]
        out += [f"  {n / max(self.samples, 1):5.2f}  {k}" for k, n in
                sorted(self.counts.items(), key=lambda kv: -kv[1])[:top]]
        return out


def install_sipp_context(tone: str) -> None:
    """The bench-only endpoint and dialplan, included into the bench gateway's
    generated configs (asterisk up writes them afresh each start)."""
    from sandbox.instances import instances
    from sandbox.settings import SandboxSettings

    settings = SandboxSettings.from_env()
    gateway = instances(settings)["gateway"]
    etc = gateway.dir / "etc"
    src = BENCH_DIR / "asterisk"
    (etc / "bench-sipp-pjsip.conf").write_text((src / "bench-sipp-pjsip.conf").read_text())
    (etc / "bench-sipp-extensions.conf").write_text(
        (src / "bench-sipp-extensions.conf").read_text()
        .replace("{{tone}}", tone).replace("{{trunk}}", settings.trunk_endpoint))
    for conf, include in (("pjsip.conf", "bench-sipp-pjsip.conf"),
                          ("extensions.conf", "bench-sipp-extensions.conf")):
        text = (etc / conf).read_text()
        if include not in text:
            (etc / conf).write_text(text + f'\n#include "{include}"\n')
    gateway.cli("module reload res_pjsip.so")
    gateway.cli("dialplan reload")
    wait_until(lambda: "bench-sipp" in gateway.cli("pjsip show endpoints"), 10,
               "the bench-sipp endpoint")


def sipp_phase(name: str, numbers: list[str], rate: float, pids: dict[str, int],
               limit: int = 100) -> Result:
    folder = WORK_DIR / "sipp"
    folder.mkdir(parents=True, exist_ok=True)
    inf = folder / f"{name}.csv"
    inf.write_text("SEQUENTIAL\n" + "".join(f"{n};\n" for n in numbers))
    log = folder / f"{name}-invites.log"
    log.unlink(missing_ok=True)
    cmd = ["sipp", "127.0.0.1:35060", "-sf", str(BENCH_DIR / "sipp_uac.xml"),
           "-inf", str(inf), "-i", "127.0.0.2", "-p", str(SIPP_PORT), "-mi", "127.0.0.2",
           "-mp", str(SIPP_MEDIA_PORT), "-r", f"{rate:g}", "-m", str(len(numbers)),
           "-l", str(limit), "-trace_logs", "-log_file", str(log), "-nostdin",
           "-timeout", f"{int(60 + len(numbers) / rate)}s", "-recv_timeout", "40000",
           "-trace_stat", "-stf", str(folder / f"{name}-stat.csv")]
    say(f"sipp {name}: {len(numbers)} calls at {rate:g}/s")
    offset = log_offset()
    meter = CpuMeter(pids)
    threads = ThreadMeter(pids)
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=folder,
                         timeout=120 + len(numbers) / rate)
    (LOG_DIR / f"sipp-{name}.log").write_text(out.stdout + out.stderr)
    if out.returncode not in (0, 1):  # 1: some calls failed (counted below)
        raise SetupError(f"sipp failed ({out.returncode}): {out.stderr[-2000:]}")
    settle_calls_ended(numbers)
    cpu = meter.stop()
    busiest = threads.stop()
    started: dict[str, float] = {}
    for line in Path(log).read_text().splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "INVITE":
            started.setdefault(parts[1], float(parts[2]) + float(parts[3]) / 1e6)
    calls = carrier_calls()
    completed = {n for n in numbers if n in calls and calls[n]["answered"]
                 and calls[n]["duration"] >= TONE_SECONDS}
    failed = re.search(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", out.stdout)
    outcomes = {"sipp ok, carrier heard >= 1 s": len(completed),
                "sipp failed calls": int(failed.group(1)) if failed else -1}
    result = summarise(name, numbers, started, min(started.values(), default=0.0), completed,
                       outcomes, cpu, offset)
    result.threads = busiest
    return result


def ms(values: list[float], q: float) -> float:
    return percentile(values, q) * 1000


def rows_for(label: str, r: Result) -> list[tuple[str, str]]:
    return [
        (label, f"{r.completed}/{r.offered} completed; {r.sustained:.1f} calls/s (first to "
                f"last end), {r.overall:.1f} calls/s (first start to last end)"),
        ("  post-dial p50 / p99", f"{r.p(50):,.0f} / {r.p(99):,.0f} ms"),
        *([("  of which 201 -> claimed, claimed -> carrier INVITE, p50 / p99",
            f"{ms(r.to_claim, 50):,.0f} / {ms(r.to_claim, 99):,.0f} ms, "
            f"{ms(r.claim_to_invite, 50):,.0f} / {ms(r.claim_to_invite, 99):,.0f} ms")]
          if r.to_claim else []),
        ("  outcomes", ", ".join(f"{k} {v}" for k, v in sorted(r.outcomes.items()))),
        ("  cores used", ", ".join(f"{k} {v:.2f}" for k, v in r.cpu.items())),
        *([("  busiest thread", ", ".join(f"{k} {c:.2f} ({n})" for k, (c, n)
                                          in r.threads.items()))] if r.threads else []),
    ]


def numbers(prefix: str, count: int) -> list[str]:
    return [f"+46736{prefix}{i:04d}" for i in range(count)]


@dataclass
class Step:
    rate: float
    result: Result

    @property
    def clean(self) -> bool:  # at most 1% of the step's calls lost
        return self.result.completed >= 0.99 * self.result.offered


def sipp_ramp(rates: list[float], seconds: float, most: int, pids: dict[str, int]
              ) -> list[Step]:
    """sipp at each rate in turn, `seconds` of calls (at most `most`), until a
    step fails calls or its completed rate rises by less than 5%."""
    steps: list[Step] = []
    best = 0.0
    for i, rate in enumerate(rates):
        count = max(20, min(most, int(rate * seconds)))
        r = sipp_phase(f"ramp-{rate:g}", numbers(f"3{i}", count), rate, pids,
                       limit=max(100, int(rate * 4)))
        steps.append(Step(rate, r))
        say(f"sipp ramp {rate:g}/s: {r.completed}/{r.offered} completed, "
            f"{r.sustained:.1f} calls/s, cores {r.cpu.get('machine', 0):.2f}")
        if not steps[-1].clean or (best and r.sustained < 1.05 * best):
            break
        best = max(best, r.sustained)
    return steps


def lifted_env(rate: float, calls: int) -> dict[str, str]:
    """The pace and both in-flight caps raised, as an operator would (env)."""
    return {"AMIVONO_CALLS_PER_SECOND": f"{rate:g}",
            "AMIVONO_CALLS_PER_DISPATCHER": str(calls), "AMIVONO_CALLS_PER_TRUNK": str(calls)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=100, help="burst at the default pace")
    ap.add_argument("--fast-calls", type=int, default=200)
    ap.add_argument("--fast-rate", type=float, default=50.0,
                    help="AMIVONO_CALLS_PER_SECOND and sipp's rate for the fast phase")
    ap.add_argument("--paced-rate", type=float, default=5.0)
    ap.add_argument("--paced-seconds", type=float, default=10.0)
    ap.add_argument("--no-base", action="store_true",
                    help="skip the paced 5/s, 10/s and fast phases (only issue 12's)")
    ap.add_argument("--ramp", default="50,100,150,200,250,300",
                    help="sipp's rates, calls/s, tried in turn (empty: no ramp)")
    ap.add_argument("--ramp-seconds", type=float, default=6.0, help="calls per step: rate x this")
    ap.add_argument("--ramp-max-calls", type=int, default=1500, help="at most, per step")
    ap.add_argument("--lifted-rate", type=float, default=1000.0,
                    help="AMIVONO_CALLS_PER_SECOND with the pace lifted")
    ap.add_argument("--lifted-calls", type=int, default=400,
                    help="AMIVONO_CALLS_PER_DISPATCHER and _PER_TRUNK with the pace lifted")
    ap.add_argument("--lifted-burst", type=int, default=0,
                    help="calls in Amivono's lifted bursts (0: as many as sipp's best step)")
    ap.add_argument("--paced50-rate", type=float, default=50.0)
    ap.add_argument("--paced50-seconds", type=float, default=6.0)
    ap.add_argument("--profile", nargs="?", const="lifted", choices=("lifted", "paced50"),
                    help="py-spy on the lifted dispatcher during one more lifted burst "
                         "(or paced 50/s phase)")
    args = ap.parse_args()
    if not (10 <= args.calls <= 1000 and 10 <= args.fast_calls <= 1000):
        ap.error("--calls and --fast-calls must be 10 to 1000")
    if not (1 <= args.fast_rate <= 100 and 1 <= args.paced_rate <= 20):
        ap.error("--fast-rate 1 to 100, --paced-rate 1 to 20")
    rates = [float(x) for x in args.ramp.split(",") if x.strip()]
    if len(rates) > 10 or any(not 1 <= r <= 1000 for r in rates):
        ap.error("--ramp: at most 10 rates, each 1 to 1000")
    if not (1 <= args.ramp_seconds <= 30 and 20 <= args.ramp_max_calls <= 5000
            and 0 <= args.lifted_burst <= 5000 and 1 <= args.lifted_calls <= 2000):
        ap.error("--ramp-seconds 1 to 30, --ramp-max-calls 20 to 5000, "
                 "--lifted-burst 0 to 5000, --lifted-calls 1 to 2000")
    if not (1 <= args.paced50_rate <= 300 and 1 <= args.paced50_seconds <= 30):
        ap.error("--paced50-rate 1 to 300, --paced50-seconds 1 to 30")
    paced_n = int(args.paced_rate * args.paced_seconds)
    paced50_n = int(args.paced50_rate * args.paced50_seconds)
    profile_lines: list[str] = []

    with cleanup_on_exit() as stack:
        ensure_debian_packages("voice_calls")
        key, api = gateway_stack(stack, "bench-voice")
        import httpx

        r = httpx.put(f"{API}/files/tone.wav", content=tone_wav(),
                      headers={"Authorization": f"Bearer {key}"}, timeout=30)
        if r.status_code not in (200, 201):
            raise SetupError(f"upload failed: {r.status_code} {r.text}")
        row = psql("SELECT account_id, stem FROM sound_files WHERE name = 'tone.wav'",
                   BENCH_ENV["AMIVONO_DATABASE_URL"])
        account_id, stem = row.split("|")
        tone = f"{BENCH_ENV['AMIVONO_SOUNDS_DIR']}/{account_id}/{stem}"

        base = {"API": api.pid, **asterisk_pids(), "PostgreSQL": postgres_pid()}
        rows: list[tuple[str, str]] = []
        if not args.no_base:
            d1 = start_dispatcher("bench-voice", ready="voice: connected")
            stack.callback(d1.stop)
            pids = {**base, "dispatcher": d1.pid}
            a_paced = amivono_phase("paced", key, numbers("10", paced_n), args.paced_rate, pids)
            a_burst = amivono_phase("burst", key, numbers("11", args.calls), 0.0, pids)
            d1.stop()
            d2 = start_dispatcher("bench-voice-fast", ready="voice: connected",
                                  AMIVONO_CALLS_PER_SECOND=f"{args.fast_rate:g}")
            stack.callback(d2.stop)
            a_fast = amivono_phase("fast", key, numbers("12", args.fast_calls), 0.0,
                                   {**base, "dispatcher": d2.pid})
            d2.stop()

        install_sipp_context(tone)
        if not args.no_base:
            s_paced = sipp_phase("paced", numbers("20", paced_n), args.paced_rate, base)
            s_burst = sipp_phase("default-rate", numbers("21", args.calls), 10.0, base)
            s_fast = sipp_phase("fast", numbers("22", args.fast_calls), args.fast_rate, base)
            rows += rows_for(f"Amivono paced {args.paced_rate:g}/s x {args.paced_seconds:g} s",
                             a_paced)
            rows += rows_for(f"Amivono burst of {args.calls} (default pace 10/s)", a_burst)
            rows += rows_for(f"Amivono burst of {args.fast_calls}, AMIVONO_CALLS_PER_SECOND="
                             f"{args.fast_rate:g}", a_fast)
            rows += rows_for(f"sipp paced {args.paced_rate:g}/s x {args.paced_seconds:g} s",
                             s_paced)
            rows += rows_for(f"sipp {args.calls} calls at 10/s", s_burst)
            rows += rows_for(f"sipp {args.fast_calls} calls at {args.fast_rate:g}/s", s_fast)
            rows += [
                ("RATIO Amivono/sipp calls/s (10/s)", ratio(a_burst.sustained, s_burst.sustained)),
                (f"RATIO Amivono/sipp calls/s ({args.fast_rate:g}/s)",
                 ratio(a_fast.sustained, s_fast.sustained)),
                ("RATIO Amivono/sipp post-dial p50 (paced)", ratio(a_paced.p(50), s_paced.p(50))),
                ("RATIO Amivono/sipp post-dial p99 (paced)", ratio(a_paced.p(99), s_paced.p(99))),
            ]

        # --- issue 12: sipp's maximum, Amivono with the pace lifted, 50/s paced ---
        steps = sipp_ramp(rates, args.ramp_seconds, args.ramp_max_calls, base) if rates else []
        best = max(steps, key=lambda st: st.result.sustained) if steps else None
        burst_n = args.lifted_burst or (best.result.offered if best else 300)
        env = lifted_env(args.lifted_rate, args.lifted_calls)
        d3 = start_dispatcher("bench-voice-lifted", ready="voice: connected", **env)
        stack.callback(d3.stop)
        pids = {**base, "dispatcher": d3.pid}
        a_lifted = amivono_phase("lifted", key, numbers("40", burst_n), 0.0, pids)
        a_paced50 = amivono_phase("paced50", key, numbers("41", paced50_n),
                                  args.paced50_rate, pids)
        if args.profile:
            out = str(WORK_DIR / "profile-voice-dispatcher.txt")
            prof_n, prof_rate = ((burst_n, 0.0) if args.profile == "lifted"
                                 else (paced50_n, args.paced50_rate))
            say(f"profiling the lifted dispatcher, {args.profile} (py-spy, {out})")
            sampler = PgSampler()
            profiled = amivono_phase(f"{args.profile}-profiled", key, numbers("42", prof_n),
                                     prof_rate, pids, profile=out, spy_pid=d3.pid)
            pg_lines = sampler.stop()
            profile_lines = [f"profiled phase: post-dial p50 / p99 {profiled.p(50):,.0f} / "
                             f"{profiled.p(99):,.0f} ms (py-spy slows the dispatcher)"]
            profile_lines += profile_top(out) + pg_lines
        d3.stop()
        a_at_max = None
        if best is not None:  # the pace set to sipp's best rate, caps as lifted
            d4 = start_dispatcher("bench-voice-at-max", ready="voice: connected",
                                  **lifted_env(best.rate, args.lifted_calls))
            stack.callback(d4.stop)
            a_at_max = amivono_phase("at-sipp-max", key, numbers("43", burst_n), 0.0,
                                     {**base, "dispatcher": d4.pid})
            d4.stop()
        s_paced50 = sipp_phase("paced50", numbers("44", paced50_n), args.paced50_rate, base,
                               limit=max(100, int(args.paced50_rate * 4)))

    for st in steps:
        rows += rows_for(f"sipp ramp step {st.rate:g}/s x {st.result.offered}"
                         + ("" if st.clean else " (calls failed)"), st.result)
    lifted = (f"AMIVONO_CALLS_PER_SECOND={args.lifted_rate:g}, "
              f"CALLS_PER_DISPATCHER/TRUNK={args.lifted_calls}")
    rows += rows_for(f"Amivono burst of {burst_n}, {lifted}", a_lifted)
    if a_at_max is not None and best is not None:
        rows += rows_for(f"Amivono burst of {burst_n}, AMIVONO_CALLS_PER_SECOND={best.rate:g} "
                         "(sipp's best step)", a_at_max)
    rows += rows_for(f"Amivono paced {args.paced50_rate:g}/s x {args.paced50_seconds:g} s "
                     f"({lifted})", a_paced50)
    rows += rows_for(f"sipp paced {args.paced50_rate:g}/s x {args.paced50_seconds:g} s", s_paced50)
    if best is not None:
        top = best.result.sustained
        rows += [
            ("sipp maximum (ramp)", f"{top:.1f} completed calls/s at {best.rate:g}/s offered"),
            ("RATIO Amivono lifted / sipp maximum", ratio(a_lifted.sustained, top)),
        ]
        if a_at_max is not None:
            rows += [("RATIO Amivono paced at sipp's best rate / sipp maximum",
                      ratio(a_at_max.sustained, top))]
    rows += [
        (f"RATIO Amivono/sipp post-dial p50 ({args.paced50_rate:g}/s)",
         ratio(a_paced50.p(50), s_paced50.p(50))),
        (f"RATIO Amivono/sipp post-dial p99 ({args.paced50_rate:g}/s)",
         ratio(a_paced50.p(99), s_paced50.p(99))),
    ]
    notes = [
        "the same 1 s tone, the same trunk (digest auth), ulaw end to end, the carrier records",
        "Amivono: default settings (AMIVONO_CALLS_PER_SECOND=10, 50 calls per dispatcher, "
        "100 per trunk) except where the row says otherwise",
        "post-dial: Amivono from the 201, sipp from its INVITE, to the carrier's first "
        "dialplan step (messages.log)",
        "a burst's post-dial latency is mostly time queued behind the pace",
        "calls/s: completions from the first call's end to the last's (the carrier's log); "
        "sipp's maximum is its best ramp step",
    ]
    print_block("Voice calls (bench/voice_calls.py)", rows, notes)
    if profile_lines:
        print(f"\npy-spy on the lifted dispatcher over a separate {args.profile} phase:")
        print("\n".join(profile_lines))


if __name__ == "__main__":
    started = time.monotonic()
    main()
    say(f"done in {time.monotonic() - started:.0f} s")
    sys.exit(0)
