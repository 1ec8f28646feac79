"""Fixtures: a real PostgreSQL database, the two real Asterisk instances, and
the gateway's own processes (API, dispatchers) started as a user would."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

# Ports and folders apart from the demo's, so tests run beside a running demo.
# AMIVONO_TEST_SLOT=N moves them all, so several suites can run at once: ports
# by N*100 (used 0 to 4; each slot's ports, gateway2's at +2 included, stay
# within 50 of slot 0's, so any N from 0 to 9 is apart from the others).
# Under pytest-xdist (scripts/test.sh runs the integration suite with two
# workers) worker gwK takes slot N+K: its own database, Asterisk pair and ports.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
SLOT = int(os.environ.get("AMIVONO_TEST_SLOT", "0")) + int(_WORKER.removeprefix("gw") or 0)
_P = SLOT * 100
TEST_ENV = {
    "AMIVONO_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/amivono_test{SLOT or ''}",
    "AMIVONO_API_PORT": str(28080 + _P),
    "AMIVONO_PUBLIC_BASE_URL": f"http://127.0.0.1:{28080 + _P}",
    "AMIVONO_LINK_BASE_URL": f"http://127.0.0.1:{28080 + _P}/l",
    "AMIVONO_MINUTE_SECONDS": "1",
    "AMIVONO_POLL_SECONDS": "0.5",
    "AMIVONO_ARI_URL": f"http://127.0.0.1:{28088 + _P}/ari",
    "AMIVONO_HTTP_PORT": str(28088 + _P),
    "AMIVONO_SIP_PORT": str(25060 + _P),
    "AMIVONO_AMI_PORT": str(25038 + _P),
    "AMIVONO_TRUNK_PORT": str(25070 + _P),
    "AMIVONO_CARRIER_HTTP_PORT": str(28089 + _P),
    "AMIVONO_CARRIER_AMI_PORT": str(25039 + _P),
    "AMIVONO_RUN_DIR": f"/srv/amivono-test{SLOT or ''}",
    "AMIVONO_FASTAGI_PORT": str(24573 + _P),
    "AMIVONO_SOUNDS_DIR": f"/var/lib/amivono/sounds-test{SLOT or ''}",
    "AMIVONO_SMS_INBOX": f"/var/lib/amivono/inbox-test{SLOT or ''}/sms-inbox.log",
    "AMIVONO_LOG_LEVEL": "INFO",
    # Most tests send from numbers no account owns; tests/test_two_way_sms.py
    # runs its own API under the default policy, `owned`.
    "AMIVONO_SENDER_POLICY": "any",
    # Webhook receivers run on loopback; retries come in milliseconds, not hours.
    "AMIVONO_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
    "AMIVONO_WEBHOOK_RETRY_SCALE": "0.002",
    # Schemathesis sends hundreds of wrong keys from loopback, as a guesser
    # would; tests/test_http_limits.py runs its own API with a small burst.
    "AMIVONO_AUTH_FAILURE_BURST": "1000000",
    # Load tests send far more than 30 an hour to one number; the cap has its
    # own API in tests/test_destination_guards.py.
    "AMIVONO_DESTINATION_CAP_PER_HOUR": "0",
}
os.environ.update(TEST_ENV)

from sandbox import processes  # noqa: E402
from sandbox.databases import fresh_database  # noqa: E402
from sandbox.instances import Instance, instances  # noqa: E402
from sandbox.processes import wait_for as wait_for  # noqa: E402  (tests import it from here)
from sandbox.processes import wait_healthy as wait_healthy  # noqa: E402
from sandbox.settings import SandboxSettings  # noqa: E402
from service.store.api_keys import create_key  # noqa: E402  (settings read the environment above)

from .webhook_receiver import Receiver  # noqa: E402

API = f"http://127.0.0.1:{TEST_ENV['AMIVONO_API_PORT']}"
LOG_DIR = Path(os.environ.get("AMIVONO_TEST_LOGS", f"/tmp/amivono-test-logs{SLOT or ''}"))
LAUNCH = processes.Launcher(LOG_DIR)


class Proc(processes.Proc):
    """An `amivono` subcommand run as its own process, as an operator would,
    its log in LOG_DIR/<name>.log (what LAUNCH.amivono starts; the tests
    construct it by this name)."""

    def __init__(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        super().__init__(name, processes.amivono_argv(*args, python=LAUNCH.python), LOG_DIR,
                         env=env)


@pytest.fixture(scope="session")
def settings() -> SandboxSettings:
    return SandboxSettings.from_env()


@pytest.fixture(scope="session")
async def db(settings: SandboxSettings) -> AsyncIterator[str]:
    """A fresh test database with the schema applied, and an empty inbox file:
    the lines of an earlier run would be replayed into the new database."""
    Path(settings.sms_inbox).unlink(missing_ok=True)  # noqa: ASYNC240 (once, at start)
    yield await fresh_database(settings.database_url)


@pytest.fixture(scope="session")
async def pool(db: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(db, min_size=1, max_size=8)
    yield p
    await p.close()


@pytest.fixture(scope="session")
def sandbox(settings: SandboxSettings) -> Iterator[dict[str, Instance]]:
    """Both real Asterisk instances: the gateway and the carrier simulator."""
    running = instances(settings)
    for inst in running.values():
        inst.start()
    yield running
    for inst in running.values():
        inst.stop()


@pytest.fixture(scope="session")
def carrier(sandbox: dict[str, Instance]) -> Instance:
    return sandbox["carrier"]


@pytest.fixture(scope="session")
def gateway(sandbox: dict[str, Instance]) -> Instance:
    return sandbox["gateway"]


@pytest.fixture(scope="session")
async def api(db: str) -> AsyncIterator[str]:
    proc = await LAUNCH.api("api", int(TEST_ENV["AMIVONO_API_PORT"]))
    yield API
    proc.stop()


@pytest.fixture
async def client(api: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api, timeout=20) as c:
        yield c


@pytest.fixture
async def new_key(pool: asyncpg.Pool) -> Callable[..., Any]:
    """Make a fresh account (so tests never share a rate-limit window) and its key."""
    counter = iter(range(10**9))

    async def make(prefix: str = "acct") -> str:
        return await create_key(pool, f"{prefix}-{os.getpid()}-{time.time_ns()}-{next(counter)}")

    return make


@pytest.fixture
async def auth(new_key: Callable[..., Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {await new_key()}"}


def start_dispatcher(name: str, **env: str) -> processes.Proc:
    """Not waited for: some tests start one that never connects."""
    return LAUNCH.dispatcher(name, env)


@pytest.fixture(scope="module")
async def dispatcher(db: str, sandbox: dict[str, Instance]) -> AsyncIterator[processes.Proc]:
    proc = start_dispatcher(f"d-{os.getpid()}-{time.time_ns()}")
    yield proc
    proc.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A real HTTP endpoint on loopback for webhook deliveries."""
    r = Receiver()
    await r.start()
    yield r
    await r.stop()
