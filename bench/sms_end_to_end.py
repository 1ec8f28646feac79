"""SMS end to end: accepted by the API (201) -> received by the carrier
simulator, beside Kannel: sendsms accepted (202) -> received by fakesmsc.

    .venv/bin/python bench/sms_end_to_end.py [--burst 2000] [--paced-rate 50]
                                             [--paced-seconds 10] [--no-second-dispatcher]

Two phases for each side, with the same driver (bench/load.py `drive`,
32 keep-alive connections):
  burst  N messages posted as fast as they are accepted: the sustained rate at
         which they reach the far end (first to last arrival), and the latency
         of each (mostly time spent queued);
  paced  an open-loop rate well below capacity: the latency of the path itself.
Amivono's latency is from the 201 (client clock) to the carrier log's time
(`python -m service carrier messages`); Kannel's from the 202 to the moment
fakesmsc printed the message (stamped on arrival through a pipe).
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import json
import socket
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime

from cpu import CpuMeter, postgres_pid
from debian import ensure_debian_packages
from kannel import KANNEL_SENDSMS_PORT, Kannel
from load import Sent, drive
from report import percentile, print_block, ratio
from stack import (
    API,
    SPEC_FROM,
    SPEC_TO,
    amivono,
    asterisk_down,
    asterisk_pids,
    carrier_dir,
    cleanup_on_exit,
    gateway_stack,
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
    sent = asyncio.run(drive(API, reqs, CONCURRENCY, rate))
    ok = [s for s in sent if s.status == 201]
    accepted = {json.loads(s.body)["id"]: s.done_at for s in ok}
    deadline_s = 60 + count / 50
    wait_until(lambda: carrier_count() - base_count >= len(ok), deadline_s,
               f"the carrier to receive {len(ok)} messages", 0.5)
    cpu = meter.stop()
    times = carrier_times()
    got = {mid: times[mid] for mid in accepted if mid in times}
    phase = make_phase(name, count, sent, accepted, got)
    phase.cpu = cpu
    return phase


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
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--burst", type=int, default=2000)
    ap.add_argument("--paced-rate", type=float, default=50.0)
    ap.add_argument("--paced-seconds", type=float, default=10.0)
    ap.add_argument("--no-second-dispatcher", action="store_true")
    args = ap.parse_args()
    if not 100 <= args.burst <= 20000:
        ap.error("--burst must be 100 to 20000")
    if not (1 <= args.paced_rate <= 500 and 5 <= args.paced_seconds <= 60):
        ap.error("--paced-rate 1 to 500 and --paced-seconds 5 to 60")
    paced_count = int(args.paced_rate * args.paced_seconds)

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
