"""API accept rate: POST /messages/sms answered 201 (the row is committed in
PostgreSQL), beside Kannel's sendsms answered 202 "0: Accepted for delivery",
both driven by the same wrk settings.

    .venv/bin/python bench/api_accept.py [--seconds 20] [--connections 64]
                                         [--workers 2] [--profile] [--kannel-store]

No dispatcher runs during the Amivono part: the messages only have to be
accepted. Kannel delivers to its fakesmsc meanwhile (it cannot answer
"0: Accepted" without an SMSC online).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import subprocess
import sys
import time

from cpu import CpuMeter, postgres_pid
from debian import ensure_debian_packages
from kannel import KANNEL_SENDSMS_PORT, Kannel
from load import WrkResult, wrk
from report import collapsed_stacks, print_block, ratio
from stack import (
    API_PORT,
    BENCH_ENV,
    PROJECT_DIR,
    PYTHON,
    SPEC_BODY,
    WORK_DIR,
    SetupError,
    cleanup_on_exit,
    drop_database,
    fresh_database,
    new_key,
    psql,
    say,
    start_api,
)

from sandbox.processes import Proc


def amivono_wrk(key: str, seconds: float, connections: int, threads: int, name: str,
                port: int = API_PORT) -> WrkResult:
    env = {"BENCH_METHOD": "POST", "BENCH_BODY": SPEC_BODY, "BENCH_KEY": key,
           "BENCH_STATUS": "201", "BENCH_PREFIX": ""}
    return wrk(f"http://127.0.0.1:{port}/messages/sms", seconds, connections, threads,
               env, name)


def kannel_wrk(kannel: Kannel, seconds: float, connections: int, threads: int,
               name: str) -> WrkResult:
    url = f"http://127.0.0.1:{KANNEL_SENDSMS_PORT}" + kannel.sendsms_path(
        "This is an sms message.")
    env = {"BENCH_METHOD": "GET", "BENCH_BODY": "", "BENCH_KEY": "", "BENCH_STATUS": "202",
           "BENCH_PREFIX": "0: Accepted"}
    return wrk(url, seconds, connections, threads, env, name)


def committed_rows() -> int:
    return int(psql("SELECT count(*) FROM sms_messages", BENCH_ENV["AMIVONO_DATABASE_URL"]))


def ensure_py_spy() -> str:
    spy = PROJECT_DIR / ".venv" / "bin" / "py-spy"
    if not spy.exists():
        say("installing py-spy into the venv")
        subprocess.run([PYTHON, "-m", "pip", "install", "-q", "py-spy"], check=True)
    return str(spy)


def profile_api(api: Proc, key: str, seconds: float, connections: int) -> str:
    """py-spy (sampling, blocking mode for whole stacks) on the API process
    while wrk loads it: collapsed stacks and a flame graph in WORK_DIR."""
    spy = ensure_py_spy()
    out = WORK_DIR / "profile-api.txt"
    cmd = [spy, "record", "-r", "200", "-d", str(int(seconds)), "-p", str(api.pid),
           "-f", "raw", "-o", str(out)]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        job = pool.submit(subprocess.run, cmd, capture_output=True, text=True)
        time.sleep(1)
        amivono_wrk(key, seconds, connections, 2, "profile")
        if job.result().returncode != 0:
            raise SetupError(f"py-spy failed: {job.result().stderr}")
    subprocess.run([spy, "record", "-r", "200", "-d", "5", "-p", str(api.pid), "-f",
                    "flamegraph", "-o", str(WORK_DIR / "profile-api.svg")],
                   capture_output=True)  # idle by then: only for the picture's layout
    return str(out)


# What the accept path does, by the frames that start each part (inclusive).
PROFILE_PARTS = [  # parts the code does not have (any more) are left out of the summary
    ("key check + rate count (rate_limit.admit)", "admit (service/rate_limit.py"),
    ("authenticate (api_keys.authenticate)", "authenticate (service/api_keys.py"),
    ("rate limit (rate_limit.count_request)", "count_request (service/rate_limit.py"),
    ("read + parse JSON (json_io.read_json)", "read_json (service/http/json_io.py"),
    ("validate (sms_requests.parse_sms_request)", "parse_sms_request (service/sms_requests.py"),
    ("  of which phone numbers (phonenumbers)", "(phonenumbers/"),
    ("tracked-link token (tracked_links.new_token)", "new_token (service/tracked_links.py"),
    ("create (idempotency.create_once), all of it", "create_once (service/idempotency.py"),
    ("  INSERT (sms_messages.create)", "create (service/sms_messages.py"),
    ("  re-read for the answer (sms_messages.load)", "load (service/sms_messages.py"),
    ("  BEGIN (Transaction.start)", "Transaction.start"),
    ("  COMMIT (Transaction.__aexit__)", "Transaction.__aexit__"),
    ("JSON answer (idempotency._json)", "_json (service/idempotency.py"),
    ("pool release: asyncpg Connection.reset query", "Connection.reset (asyncpg"),
    ("asyncpg, all calls", "(asyncpg/"),
    ("socket writes (_SelectorSocketTransport.write)", "_SelectorSocketTransport.write"),
    ("socket reads (_read_ready)", "_SelectorSocketTransport._read_ready"),
]


def summarise_profile(path: str, top: int = 15) -> list[str]:
    samples = 0
    inclusive = {label: 0 for label, _ in PROFILE_PARTS}
    leaves: dict[str, int] = {}
    for frames, n in collapsed_stacks(path):
        samples += n
        stack = ";".join(frames)
        for label, needle in PROFILE_PARTS:
            if needle in stack:
                inclusive[label] += n
        leaves[frames[-1]] = leaves.get(frames[-1], 0) + n
    if not samples:
        return ["(no samples)"]
    out = [f"{samples} samples (200/s; idle time is not sampled)", "",
           "inclusive share of the accept path's parts:"]
    out += [f"  {100 * n / samples:5.1f}%  {label}" for label, n in inclusive.items() if n]
    out += ["", f"top {top} functions by own time (leaf frames):"]
    ranked = sorted(leaves.items(), key=lambda kv: -kv[1])[:top]
    out += [f"  {100 * n / samples:5.1f}%  {frame}" for frame, n in ranked]
    return out


def cores(used: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in used.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2,
                    help="also run `amivono api` with AMIVONO_API_WORKERS=N (0: skip)")
    ap.add_argument("--profile", action="store_true",
                    help="also py-spy the API under the same load (a separate run)")
    ap.add_argument("--kannel-store", action="store_true",
                    help="Kannel with store-type = spool (its messages kept on disk)")
    args = ap.parse_args()
    if not 20 <= args.seconds <= 300:
        ap.error("--seconds must be 20 to 300")
    if not 0 <= args.workers <= 8:
        ap.error("--workers must be 0 to 8")

    with cleanup_on_exit() as stack:
        ensure_debian_packages("api_accept")
        fresh_database()
        stack.callback(drop_database)
        key = new_key("bench-accept")
        pg = postgres_pid()

        # --- Amivono, one API process ---------------------------------------
        api = start_api(AMIVONO_API_WORKERS="1")
        stack.callback(api.stop)
        say(f"Amivono: warm-up, then {args.seconds:.0f} s of POST /messages/sms")
        amivono_wrk(key, 3, args.connections, args.threads, "amivono-warmup")
        before = committed_rows()
        meter = CpuMeter({"API": api.pid, "PostgreSQL": pg})
        ami = amivono_wrk(key, args.seconds, args.connections, args.threads, "amivono")
        ami_cpu = meter.stop()
        after = committed_rows()
        if after - before < ami.ok:
            raise SetupError(f"only {after - before} rows committed for {ami.ok} 201s")
        profile_lines: list[str] = []
        if args.profile:
            say("profiling the API with py-spy under the same load")
            profile_lines = summarise_profile(
                profile_api(api, key, min(args.seconds, 20), args.connections))
        api.stop()

        workers = workers_cpu = None
        if args.workers:
            say(f"Amivono: AMIVONO_API_WORKERS={args.workers}")
            api_n = start_api("api-workers", AMIVONO_API_WORKERS=str(args.workers))
            stack.callback(api_n.stop)
            amivono_wrk(key, 3, args.connections, args.threads, "amivono-workers-warmup")
            meter = CpuMeter({"API": api_n.pid, "PostgreSQL": pg})
            workers = amivono_wrk(key, args.seconds, args.connections, args.threads,
                                  "amivono-workers")
            workers_cpu = meter.stop()
            api_n.stop()

        # --- Kannel -------------------------------------------------------------
        kannel = Kannel(store=args.kannel_store)
        stack.callback(kannel.stop)
        kannel.start()
        say(f"Kannel: warm-up, then {args.seconds:.0f} s of GET /cgi-bin/sendsms")
        kannel_wrk(kannel, 3, args.connections, args.threads, "kannel-warmup")
        received_before = len(kannel.received)
        meter = CpuMeter({p.name.removeprefix("kannel-"): p.pid for p in kannel.procs})
        kan = kannel_wrk(kannel, args.seconds, args.connections, args.threads, "kannel")
        kan_cpu = meter.stop()
        time.sleep(1)
        delivered = len(kannel.received) - received_before
        kannel.stop()

    rows = [
        ("load", f"wrk -t{args.threads} -c{args.connections} -d{args.seconds:.0f}s --latency "
                 f"(bench/wrk_count.lua), after a 3 s warm-up"),
        ("Amivono POST /messages/sms -> 201", f"{ami.ok_per_second:,.0f} accepted/s "
         f"({ami.ok:,} ok, {ami.bad} other)"),
        ("  latency p50 / p90 / p99", f"{ami.p50_ms:.1f} / {ami.p90_ms:.1f} / "
                                      f"{ami.p99_ms:.1f} ms"),
        ("  rows committed in PostgreSQL", f"{after - before:,} (>= the 201s)"),
        ("  cores used", cores(ami_cpu)),
        ("Kannel sendsms -> 202 '0: Accepted'", f"{kan.ok_per_second:,.0f} accepted/s "
         f"({kan.ok:,} ok, {kan.bad} other)"),
        ("  latency p50 / p90 / p99", f"{kan.p50_ms:.1f} / {kan.p90_ms:.1f} / "
                                      f"{kan.p99_ms:.1f} ms"),
        ("  fakesmsc received meanwhile", f"{delivered:,}"),
        ("  cores used", cores(kan_cpu)),
        ("RATIO Amivono/Kannel accepted/s", ratio(ami.ok_per_second, kan.ok_per_second)),
        ("RATIO Amivono/Kannel p50 latency", ratio(ami.p50_ms, kan.p50_ms)),
        ("RATIO Amivono/Kannel p99 latency", ratio(ami.p99_ms, kan.p99_ms)),
    ]
    if workers is not None and workers_cpu is not None:
        rows += [
            (f"Amivono, AMIVONO_API_WORKERS={args.workers}", f"{workers.ok_per_second:,.0f} "
             f"accepted/s ({workers.ok:,} ok, {workers.bad} other)"),
            ("  latency p50 / p90 / p99", f"{workers.p50_ms:.1f} / {workers.p90_ms:.1f} / "
                                          f"{workers.p99_ms:.1f} ms"),
            ("  cores used", cores(workers_cpu)),
            (f"RATIO {args.workers} workers/Kannel accepted/s",
             ratio(workers.ok_per_second, kan.ok_per_second)),
        ]
    notes = [
        "Amivono: `python -m service api`, no dispatcher; the spec's body (repeat 10, so a "
        "tracked link is made); every 201 is a committed row (synchronous_commit on)",
        f"Kannel 1.4.5: {'store-type = spool' if args.kannel_store else 'no store (in memory)'}"
        "; bearerbox, smsbox and fakesmsc",
        "wrk, the servers and PostgreSQL share the same 2 cores ('machine' = all of them, "
        "out of 2.00)",
    ]
    if ami.errors or kan.errors:
        notes.append(f"socket errors: Amivono '{ami.errors}', Kannel '{kan.errors}'")
    print_block("API accept rate (bench/api_accept.py)", rows, notes)
    if profile_lines:
        print("\npy-spy on the single API process under the same load:")
        print("\n".join(profile_lines))
        print(f"(collapsed stacks: {WORK_DIR}/profile-api.txt)")


if __name__ == "__main__":
    sys.exit(main())
