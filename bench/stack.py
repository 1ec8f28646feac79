"""The benchmarks' own Amivono stack: ports, database and Asterisk folder apart
from the demo's and the tests', and Amivono's pieces started through the CLI as
an operator would (the processes through the sandbox's harness,
sandbox/processes.py, as the tests start them).

Importing this sets the AMIVONO_* values of BENCH_ENV, so every `amivono`
command and process a bench starts uses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
PYTHON = str(PROJECT_DIR / ".venv" / "bin" / "python")
# A stack apart (set by the fault suite, bench/faults.py, before it imports
# this): every port moved by 10000 and its own folders, so it runs beside
# the other benches without their lock.
APART = os.environ.get("AMIVONO_BENCH_APART") == "1"
_P = 10000 if APART else 0
_SUFFIX = "-apart" if APART else ""
WORK_DIR = Path(os.environ.get("AMIVONO_BENCH_WORK",
                               f"/tmp/amivono-bench{_SUFFIX}"))  # noqa: S108
LOG_DIR = WORK_DIR / "logs"

DB_NAME = "amivono_bench"
DATABASE_URL = f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}"
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
API_PORT = 38080 + _P
API = f"http://127.0.0.1:{API_PORT}"

# Ports and folders of the benchmarks, apart from the demo's (8080, 1xxxx) and
# the tests' (2xxxx).
BENCH_ENV = {
    "AMIVONO_DATABASE_URL": DATABASE_URL,
    "AMIVONO_API_PORT": str(API_PORT),
    "AMIVONO_PUBLIC_BASE_URL": API,
    "AMIVONO_LINK_BASE_URL": f"{API}/l",
    "AMIVONO_ARI_URL": f"http://127.0.0.1:{38088 + _P}/ari",
    "AMIVONO_HTTP_PORT": str(38088 + _P),
    "AMIVONO_CARRIER_HTTP_PORT": str(38089 + _P),
    "AMIVONO_SIP_PORT": str(35060 + _P),
    "AMIVONO_TRUNK_PORT": str(35070 + _P),
    "AMIVONO_AMI_PORT": str(35038 + _P),
    "AMIVONO_CARRIER_AMI_PORT": str(35039 + _P),
    "AMIVONO_FASTAGI_PORT": str(34573 + _P),
    "AMIVONO_RUN_DIR": f"/srv/amivono-bench{_SUFFIX}",
    "AMIVONO_SOUNDS_DIR": f"/var/lib/amivono/sounds-bench{_SUFFIX}",
    "AMIVONO_SMS_INBOX": f"/var/lib/amivono/inbox-bench{_SUFFIX}/sms-inbox.log",
    # The black-hole webhook of bench/sms_end_to_end.py listens on loopback.
    "AMIVONO_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
    # The benches send thousands to one number: no hourly cap per destination.
    "AMIVONO_DESTINATION_CAP_PER_HOUR": "0",
}
os.environ.update(BENCH_ENV)
# `service` and `sandbox` (asterisk/sandbox), also without the editable install.
for _path in (PROJECT_DIR, PROJECT_DIR / "asterisk"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import report  # noqa: E402
from cpu import busy_cores  # noqa: E402

from sandbox import databases  # noqa: E402  (after BENCH_ENV and sys.path above)
from sandbox.processes import Launcher, NotReady, Proc, wait_port_free  # noqa: E402

# The benches wait through this one, so `sandbox` is found without the install.
from sandbox.processes import wait_until as wait_until  # noqa: E402

# The spec's SMS (README, scripts/run.sh).
SPEC_FROM = "+46736265400"
SPEC_TO = "+46736265449"
SPEC_BODY = ('{"from": "+46736265400", "to": "+46736265449", '
             '"message": "This is an sms message.", "repeat": 10, "repeat_interval": 1}')

# Each process in its own session: a Ctrl-C reaches only the bench, whose
# clean-up then stops them in order.
LAUNCH = Launcher(LOG_DIR, python=PYTHON, cwd=PROJECT_DIR, own_session=True)


class SetupError(RuntimeError):
    """Something the benchmark needs could not be set up: exit non-zero."""


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --- Amivono through its CLI -------------------------------------------------

def amivono(*args: str, env: dict[str, str] | None = None, timeout: float = 120.0) -> str:
    """One `python -m service ...` command, as an operator types it; its stdout."""
    out = subprocess.run([PYTHON, "-m", "service", *args], cwd=PROJECT_DIR,
                         env={**os.environ, **(env or {})}, capture_output=True, text=True,
                         timeout=timeout)
    if out.returncode != 0:
        raise SetupError(f"amivono {' '.join(args)} failed ({out.returncode}):\n"
                         f"{out.stderr[-3000:]}")
    return out.stdout


def start_api(name: str = "api", port: int = API_PORT, **env: str) -> Proc:
    wait_port_free(port, name)
    return asyncio.run(LAUNCH.api(name, port, env, timeout=60))


def start_dispatcher(name: str, ready: str = "sms: connected", **env: str) -> Proc:
    return LAUNCH.dispatcher(name, env, ready=ready, timeout=60)


def new_key(account: str = "bench") -> str:
    key = amivono("keys", "create", account).strip().splitlines()[-1]
    amivono("keys", "rate-limit", account, "100000000")
    # The default sender policy: the account sends from a number it owns.
    amivono("numbers", "add", account, SPEC_FROM)
    return key


# --- database ------------------------------------------------------------------

def psql(sql: str, dsn: str = ADMIN_DSN) -> str:
    if shutil.which("psql") is None:
        raise SetupError("psql is missing (Debian package postgresql-client)")
    out = subprocess.run(["psql", dsn, "-v", "ON_ERROR_STOP=1", "-Atq", "-f", "-"],
                         input=sql, capture_output=True, text=True)
    if out.returncode != 0:
        raise SetupError(f"psql failed: {out.stderr}")
    return out.stdout.strip()


def drop_database(url: str = DATABASE_URL) -> None:
    asyncio.run(databases.drop_database(url))


def fresh_database(url: str = DATABASE_URL) -> None:
    """Our own database, empty; then the schema through `amivono migrate`, which
    creates it, as an operator's first run does."""
    drop_database(url)
    # The inbox file of earlier runs goes too: a new database has no offset
    # in it, so every dispatcher would replay its (tens of thousands of) old
    # delivery reports during the measurement, as the tests' conftest knows.
    Path(BENCH_ENV["AMIVONO_SMS_INBOX"]).unlink(missing_ok=True)
    amivono("migrate", env={"AMIVONO_DATABASE_URL": url})


# --- Asterisk --------------------------------------------------------------------

# The TCP ports the bench's two Asterisks listen on (HTTP/ARI, AMI). They are
# in Linux's ephemeral range, so another program's client socket may hold one;
# Asterisk then starts without it and only a dispatcher's timeout would tell.
ASTERISK_TCP_PORTS = tuple(int(BENCH_ENV[k]) for k in (
    "AMIVONO_HTTP_PORT", "AMIVONO_CARRIER_HTTP_PORT", "AMIVONO_AMI_PORT",
    "AMIVONO_CARRIER_AMI_PORT"))


def asterisk_up(gateways: int = 1) -> None:
    subprocess.run(["bash", str(PROJECT_DIR / "asterisk" / "install.sh")], check=True,
                   stdout=subprocess.DEVNULL)
    asterisk_down(gateways)  # a previous run's instances would hold the ports checked next
    for port in ASTERISK_TCP_PORTS:
        wait_port_free(port, "Asterisk", timeout=30)
    amivono("asterisk", "up", "--gateways", str(gateways), timeout=180)


def asterisk_down(gateways: int = 1) -> None:
    try:
        amivono("asterisk", "down", "--gateways", str(gateways), timeout=120)
    except (SetupError, subprocess.TimeoutExpired) as exc:
        say(f"asterisk down: {exc}")


def gateway_stack(stack: contextlib.ExitStack, account: str,
                  gateways: int = 1) -> tuple[str, Proc]:
    """A fresh database, the Asterisk instances (`gateways` gateway nodes and
    the carrier) and the API, each undone by `stack`; returns a key for
    `account` and the API process."""
    fresh_database()
    stack.callback(drop_database)
    stack.callback(asterisk_down, gateways)
    say(f"starting the Asterisk instances (python -m service asterisk up --gateways {gateways})")
    asterisk_up(gateways)
    key = new_key(account)
    api = start_api()
    stack.callback(api.stop)
    return key, api


def asterisk_pids(gateways: int = 1) -> dict[str, int]:
    from sandbox.instances import instances
    from sandbox.settings import SandboxSettings

    found = {f"{name} Asterisk": inst.pid() for name, inst in
             instances(SandboxSettings.from_env(), gateways=gateways).items()}
    return {k: v for k, v in found.items() if v}


@functools.cache
def carrier_dir() -> Path:
    from sandbox.instances import instances
    from sandbox.settings import SandboxSettings

    return instances(SandboxSettings.from_env())["carrier"].dir


# --- one bench run -------------------------------------------------------------------

@contextlib.contextmanager
def cleanup_on_exit() -> Iterator[contextlib.ExitStack]:
    """An ExitStack that also runs on SIGTERM/SIGINT; setup failures exit 2.
    Measures the machine's load first, for the figures block's notes."""
    stack = contextlib.ExitStack()
    background = busy_cores(3.0)
    report.note_background(background)
    if background > 0.3:
        say(f"warning: the machine is already busy ({background:.2f} cores): figures will be low")

    def stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with stack:
            yield stack
    except (SetupError, NotReady) as exc:
        say(f"SETUP FAILED: {exc}")
        sys.exit(2)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
