"""What every benchmark shares: its own database, ports and Asterisk folder,
Amivono's pieces started through the CLI as an operator would, Kannel, a small
raw HTTP/1.1 client, and the figures block printed at the end.

Nothing here touches the demo's or the tests' database, ports or folders:
everything runs with the AMIVONO_* values in BENCH_ENV.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
PYTHON = str(PROJECT_DIR / ".venv" / "bin" / "python")
WORK_DIR = Path(os.environ.get("AMIVONO_BENCH_WORK", "/tmp/amivono-bench"))  # noqa: S108
LOG_DIR = WORK_DIR / "logs"

DB_NAME = "amivono_bench"
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
API_PORT = 38080
API = f"http://127.0.0.1:{API_PORT}"

# Ports and folders of the benchmarks, apart from the demo's (8080, 1xxxx) and
# the tests' (2xxxx).
BENCH_ENV = {
    "AMIVONO_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}",
    "AMIVONO_API_PORT": str(API_PORT),
    "AMIVONO_PUBLIC_BASE_URL": API,
    "AMIVONO_LINK_BASE_URL": f"{API}/l",
    "AMIVONO_ARI_URL": "http://127.0.0.1:38088/ari",
    "AMIVONO_HTTP_PORT": "38088",
    "AMIVONO_CARRIER_HTTP_PORT": "38089",
    "AMIVONO_SIP_PORT": "35060",
    "AMIVONO_TRUNK_PORT": "35070",
    "AMIVONO_AMI_PORT": "35038",
    "AMIVONO_CARRIER_AMI_PORT": "35039",
    "AMIVONO_FASTAGI_PORT": "34573",
    "AMIVONO_RUN_DIR": "/srv/amivono-bench",
    "AMIVONO_SOUNDS_DIR": "/var/lib/amivono/sounds-bench",
}
os.environ.update(BENCH_ENV)
if str(PROJECT_DIR) not in sys.path:
    sys.path.insert(0, str(PROJECT_DIR))  # `service`, also without the editable install

# Kannel's ports (bearerbox admin, smsbox link, fake SMSC, smsbox sendsms).
# Below Linux's ephemeral range (32768-60999), so no client socket holds them.
KANNEL_ADMIN_PORT = 31000
KANNEL_BOX_PORT = 31001
KANNEL_SMSC_PORT = 31002
KANNEL_SENDSMS_PORT = 31013
KANNEL_USER = "bench"
KANNEL_PASSWORD = "bench-secret"  # noqa: S105  (a loopback-only test gateway)

# The spec's SMS (README, scripts/run.sh).
SPEC_FROM = "+46736265400"
SPEC_TO = "+46736265449"
SPEC_BODY = ('{"from": "+46736265400", "to": "+46736265449", '
             '"message": "This is an sms message.", "repeat": 10, "repeat_interval": 1}')


class SetupError(RuntimeError):
    """Something the benchmark needs could not be set up: exit non-zero."""


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --- Debian packages -------------------------------------------------------

def debian_packages(bench: str) -> list[str]:
    """The Debian packages a bench needs, from bench/debian-packages.txt."""
    out = []
    for line in (BENCH_DIR / "debian-packages.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, benches = line.partition(":")
        if bench in benches.split():
            out.append(name.strip())
    return out


def ensure_debian_packages(bench: str) -> None:
    missing = [p for p in debian_packages(bench)
               if subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True,
                                 text=True).stdout != "install ok installed"]
    if not missing:
        return
    say(f"installing Debian packages: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]):
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise SetupError(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")


# --- processes ---------------------------------------------------------------

class Proc:
    """A background process with its output in LOG_DIR/<name>.log."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None,
                 cwd: Path | None = None, stdout_pipe: bool = False) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = LOG_DIR / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            argv, env={**os.environ, **(env or {})}, cwd=cwd or PROJECT_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else self._log,
            stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


def amivono(*args: str, env: dict[str, str] | None = None, timeout: float = 120.0) -> str:
    """One `python -m service ...` command, as an operator types it; its stdout."""
    out = subprocess.run([PYTHON, "-m", "service", *args], cwd=PROJECT_DIR,
                         env={**os.environ, **(env or {})}, capture_output=True, text=True,
                         timeout=timeout)
    if out.returncode != 0:
        raise SetupError(f"amivono {' '.join(args)} failed ({out.returncode}):\n"
                         f"{out.stderr[-3000:]}")
    return out.stdout


def start_amivono(name: str, *args: str, env: dict[str, str] | None = None) -> Proc:
    return Proc(name, [PYTHON, "-m", "service", *args], env=env)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SetupError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def http_ok(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


def port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_port_free(port: int, what: str) -> None:
    """A port in Linux's ephemeral range may be held a moment by a client socket."""
    try:
        wait_until(lambda: port_free(port), 10, f"{what} port {port} to be free", 0.5)
    except SetupError:
        raise SetupError(f"{what} port {port} is taken: is another bench running?") from None


def start_api(name: str = "api", port: int = API_PORT, **env: str) -> Proc:
    wait_port_free(port, name)
    proc = start_amivono(name, "api", env={"AMIVONO_API_PORT": str(port), **env})

    def up() -> bool:
        if not proc.alive():
            raise SetupError(f"{name} exited:\n{proc.log()[-3000:]}")
        return http_ok(f"http://127.0.0.1:{port}/healthz")

    wait_until(up, 60, f"{name} on port {port}")
    return proc


def start_dispatcher(name: str, ready: str = "sms: connected", **env: str) -> Proc:
    proc = start_amivono(f"dispatcher-{name}", "dispatcher",
                         env={"AMIVONO_DISPATCHER_NAME": name, **env})

    def up() -> bool:
        if not proc.alive():
            raise SetupError(f"dispatcher {name} exited:\n{proc.log()[-3000:]}")
        return ready in proc.log()

    wait_until(up, 60, f"dispatcher {name} to connect")
    return proc


# --- database ------------------------------------------------------------------

def psql(sql: str, dsn: str = ADMIN_DSN) -> str:
    out = subprocess.run(["psql", dsn, "-v", "ON_ERROR_STOP=1", "-Atq", "-f", "-"],
                         input=sql, capture_output=True, text=True)
    if out.returncode != 0:
        raise SetupError(f"psql failed: {out.stderr}")
    return out.stdout.strip()


def drop_database(name: str = DB_NAME) -> None:
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fresh_database(name: str = DB_NAME) -> None:
    """Our own database, empty; then the schema through `amivono migrate`."""
    if shutil.which("psql") is None:
        raise SetupError("psql is missing (Debian package postgresql-client)")
    drop_database(name)
    amivono("migrate")


def new_key(account: str = "bench") -> str:
    key = amivono("keys", "create", account).strip().splitlines()[-1]
    amivono("keys", "rate-limit", account, "100000000")
    return key


# --- Asterisk --------------------------------------------------------------------

def asterisk_up() -> None:
    subprocess.run(["bash", str(PROJECT_DIR / "asterisk" / "install.sh")], check=True,
                   stdout=subprocess.DEVNULL)
    amivono("asterisk", "up", timeout=180)


def asterisk_down() -> None:
    try:
        amivono("asterisk", "down", timeout=120)
    except (SetupError, subprocess.TimeoutExpired) as exc:
        say(f"asterisk down: {exc}")


def gateway_stack(stack: contextlib.ExitStack, account: str) -> tuple[str, Proc]:
    """A fresh database, both Asterisk instances and the API, each undone by
    `stack`; returns a key for `account` and the API process."""
    fresh_database()
    stack.callback(drop_database)
    stack.callback(asterisk_down)
    say("starting both Asterisk instances (python -m service asterisk up)")
    asterisk_up()
    key = new_key(account)
    api = start_api()
    stack.callback(api.stop)
    return key, api


def asterisk_pids() -> dict[str, int]:
    from sandbox.instances import instances
    from sandbox.settings import SandboxSettings

    found = {f"{name} Asterisk": inst.pid() for name, inst in
             instances(SandboxSettings.from_env()).items()}
    return {k: v for k, v in found.items() if v}


@functools.cache
def carrier_dir() -> Path:
    from sandbox.instances import instances
    from sandbox.settings import SandboxSettings

    return instances(SandboxSettings.from_env())["carrier"].dir


# --- Kannel ------------------------------------------------------------------------

FAKESMSC = "/usr/lib/kannel/test/fakesmsc"


def kannel_conf(folder: Path, store: bool = False) -> Path:
    """A minimal kannel.conf: bearerbox with one fake SMSC, an smsbox with the
    sendsms HTTP interface and one sendsms-user; loopback only."""
    folder.mkdir(parents=True, exist_ok=True)
    store_lines = ""
    if store:
        (folder / "store").mkdir(exist_ok=True)
        store_lines = f"store-type = spool\nstore-location = {folder}/store\n"
    conf = folder / "kannel.conf"
    conf.write_text(f"""\
group = core
admin-port = {KANNEL_ADMIN_PORT}
admin-interface = 127.0.0.1
admin-password = {KANNEL_PASSWORD}
admin-allow-ip = 127.0.0.1
smsbox-port = {KANNEL_BOX_PORT}
box-allow-ip = 127.0.0.1
log-level = 3
{store_lines}
group = smsc
smsc = fake
smsc-id = fake
host = 127.0.0.1
port = {KANNEL_SMSC_PORT}
connect-allow-ip = 127.0.0.1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {KANNEL_BOX_PORT}
sendsms-port = {KANNEL_SENDSMS_PORT}
sendsms-interface = 127.0.0.1
log-level = 3

group = sendsms-user
username = {KANNEL_USER}
password = {KANNEL_PASSWORD}
""")
    return conf


@dataclass
class Kannel:
    """bearerbox + fakesmsc + smsbox. fakesmsc's output goes through a pipe
    read by a thread that stamps each received message on arrival (its own
    log has whole seconds only)."""

    store: bool = False
    procs: list[Proc] = field(default_factory=list)
    received: list[tuple[float, str]] = field(default_factory=list)
    _reader: threading.Thread | None = None

    @property
    def sendsms_base(self) -> str:
        return f"http://127.0.0.1:{KANNEL_SENDSMS_PORT}/cgi-bin/sendsms"

    def sendsms_path(self, text: str, to: str = SPEC_TO) -> str:
        from urllib.parse import urlencode

        query = urlencode({"username": KANNEL_USER, "password": KANNEL_PASSWORD,
                           "from": SPEC_FROM, "to": to, "text": text})
        return f"/cgi-bin/sendsms?{query}"

    def start(self) -> None:
        for port in (KANNEL_ADMIN_PORT, KANNEL_BOX_PORT, KANNEL_SMSC_PORT, KANNEL_SENDSMS_PORT):
            wait_port_free(port, "Kannel")
        folder = WORK_DIR / "kannel"
        shutil.rmtree(folder, ignore_errors=True)
        conf = kannel_conf(folder, self.store)
        bearerbox = Proc("kannel-bearerbox", ["bearerbox", "-v", "3", str(conf)])
        self.procs.append(bearerbox)
        wait_until(lambda: not port_free(KANNEL_SMSC_PORT), 20, "bearerbox's fake SMSC port")
        fake = Proc("kannel-fakesmsc", [FAKESMSC, "-H", "127.0.0.1", "-r",
                                        str(KANNEL_SMSC_PORT), "-m", "0", "1 2 text nop"],
                    stdout_pipe=True)
        self.procs.append(fake)
        self._reader = threading.Thread(target=self._read, args=(fake,), daemon=True)
        self._reader.start()
        smsbox = Proc("kannel-smsbox", ["smsbox", "-v", "3", str(conf)])
        self.procs.append(smsbox)
        wait_until(lambda: not port_free(KANNEL_SENDSMS_PORT), 20, "smsbox's sendsms port")
        # The fake SMSC must be online, or sendsms answers "3: Queued for later delivery".
        import httpx

        def accepted() -> bool:
            for p in self.procs:
                if not p.alive():
                    raise SetupError(f"{p.name} exited:\n{p.log()[-2000:]}")
            try:
                r = httpx.get(self.sendsms_base, params={
                    "username": KANNEL_USER, "password": KANNEL_PASSWORD, "from": SPEC_FROM,
                    "to": SPEC_TO, "text": "bench-warmup"}, timeout=3)
            except httpx.HTTPError:
                return False
            return r.status_code == 202 and r.text.startswith("0: Accepted")

        wait_until(accepted, 30, "Kannel to answer '0: Accepted for delivery'", interval=0.5)

    _GOT = re.compile(rb"Got message \d+: <(.*)>")

    def _read(self, proc: Proc) -> None:
        assert proc.proc.stdout is not None
        log = proc._log
        for line in proc.proc.stdout:
            now = time.time()
            match = self._GOT.search(line)
            if match:
                self.received.append((now, match.group(1).decode(errors="replace")))
            else:
                with contextlib.suppress(ValueError):  # the log closed at stop
                    log.write(line)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(signal.SIGINT if proc.name != "kannel-fakesmsc" else signal.SIGTERM)
        self.procs.clear()


# --- a raw HTTP/1.1 keep-alive client -------------------------------------------

class RawHttp:
    """A minimal HTTP/1.1 client on one keep-alive connection: the Python
    driver must not be the bottleneck of what it measures."""

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        close = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        data = await self.reader.readexactly(length) if length else b""
        if close:
            await self.close()
        return status, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


@dataclass
class Sent:
    index: int
    sent_at: float  # time.time() when the request was written
    done_at: float  # time.time() when the answer was read
    status: int
    body: bytes


async def drive(base: str, requests: list[tuple[str, str, bytes, dict[str, str]]],
                concurrency: int, rate: float = 0.0, timeout: float = 300.0) -> list[Sent]:
    """Send `requests` (method, path, body, headers) over `concurrency` keep-alive
    connections: as fast as they answer, or open-loop at `rate` per second."""
    out: list[Sent] = []
    next_index = 0
    start = time.monotonic()

    async def worker() -> None:
        nonlocal next_index
        client = RawHttp(base)
        try:
            while next_index < len(requests):
                i = next_index
                next_index += 1
                if rate:
                    delay = start + i / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                method, path, body, headers = requests[i]
                sent = time.time()
                status, data = await client.request(method, path, body, headers)
                out.append(Sent(i, sent, time.time(), status, data))
        finally:
            await client.close()

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), timeout)
    return sorted(out, key=lambda s: s.index)


# --- wrk -------------------------------------------------------------------------------

@dataclass
class WrkResult:
    ok: int
    bad: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: str
    output: str

    @property
    def ok_per_second(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def wrk(url: str, seconds: float, connections: int, threads: int,
        env: dict[str, str], name: str) -> WrkResult:
    """wrk with bench/wrk_count.lua: counts only the expected answers."""
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:.0f}s",
           "--latency", "--timeout", "10s", "-s", str(BENCH_DIR / "wrk_count.lua"), url]
    out = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True,
                         timeout=seconds + 60)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    (LOG_DIR / f"wrk-{name}.log").write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        raise SetupError(f"wrk failed: {out.stderr}")
    values = dict(re.findall(r"^BENCH (\w+)=(\S+)$", out.stdout, re.M))
    if "ok" not in values:
        raise SetupError(f"wrk printed no counts:\n{out.stdout}\n{out.stderr}")
    errors = re.search(r"Socket errors:.*", out.stdout)
    return WrkResult(
        ok=int(values["ok"]), bad=int(values["bad"]),
        seconds=int(values["duration_us"]) / 1e6,
        p50_ms=int(values["p50_us"]) / 1000, p90_ms=int(values["p90_us"]) / 1000,
        p99_ms=int(values["p99_us"]) / 1000,
        errors=errors.group(0) if errors else "", output=out.stdout)


# --- CPU accounting ---------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is None:
            continue
        parents[int(entry.name)] = int(fields[1])
        # utime + stime + cutime + cstime: a child that exited and was reaped
        # moves its time to its parent, so the tree's total never goes back.
        times[int(entry.name)] = sum(int(v) for v in fields[11:15]) / _TICK
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += times.get(p, 0.0)
        todo += [c for c, parent in parents.items() if parent == p]
    return total


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class CpuMeter:
    """CPU used by some process trees and by the whole machine over a span."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start = time.monotonic()
        self.before = {k: tree_cpu_seconds(p) for k, p in pids.items()}
        self.machine_before = machine_cpu()

    def stop(self) -> dict[str, float]:
        """Cores used on average: per tree, and 'machine' for all of it."""
        elapsed = time.monotonic() - self.start
        out = {k: (tree_cpu_seconds(p) - self.before[k]) / elapsed for k, p in self.pids.items()}
        busy, total = machine_cpu()
        out["machine"] = (busy - self.machine_before[0]) / max(1, total - self.machine_before[1]) \
            * (os.cpu_count() or 1)
        return out


def postgres_pid() -> int:
    out = subprocess.run(["pgrep", "-o", "-x", "postgres"], capture_output=True, text=True)
    return int(out.stdout.split()[0]) if out.stdout.strip() else 0


# --- figures -----------------------------------------------------------------------------

def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if b else "n/a"


_BACKGROUND: list[float] = []


def measure_background(seconds: float = 3.0) -> float:
    """Cores busy before the bench starts anything (other people's tests, ...)."""
    before = machine_cpu()
    time.sleep(seconds)
    busy, total = machine_cpu()
    cores = (busy - before[0]) / max(1, total - before[1]) * (os.cpu_count() or 1)
    _BACKGROUND.append(cores)
    if cores > 0.3:
        say(f"warning: the machine is already busy ({cores:.2f} cores): figures will be low")
    return cores


def git_revision() -> str:
    """The commit measured, with '+changes' when the work tree differs from it."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_DIR,
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "service"],
                           cwd=PROJECT_DIR, capture_output=True, text=True).stdout.strip()
    return f"{head or '?'}{' +changes in service/' if dirty else ''}"


_REVISION = git_revision()


def print_block(title: str, rows: list[tuple[str, str]], notes: list[str] = ()) -> None:
    notes = [*notes, f"code measured: commit {_REVISION} (at the bench's start)"]
    if _BACKGROUND:
        notes = [*notes, f"background load before the bench started: {_BACKGROUND[0]:.2f} "
                         "cores busy (of 2)"]
    width = max(len(k) for k, _ in rows)
    print()
    print("=" * 78)
    print(f"{title}   ({time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} cores)")
    print("-" * 78)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")
    for note in notes:
        print(f"  * {note}")
    print("=" * 78, flush=True)


@contextlib.contextmanager
def cleanup_on_exit() -> Iterator[contextlib.ExitStack]:
    """An ExitStack that also runs on SIGTERM/SIGINT; setup failures exit 2."""
    stack = contextlib.ExitStack()
    measure_background()

    def stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with stack:
            yield stack
    except SetupError as exc:
        say(f"SETUP FAILED: {exc}")
        sys.exit(2)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
