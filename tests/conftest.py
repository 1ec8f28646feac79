"""Fixtures: a real PostgreSQL database, the two real Asterisk instances, and
the gateway's own processes (API, dispatchers) started as a user would."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

# Ports and folders apart from the demo's, so tests run beside a running demo.
# AMIVONO_TEST_SLOT=N (0 to 3) moves them all, so several suites can run at once.
SLOT = int(os.environ.get("AMIVONO_TEST_SLOT", "0"))
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
    "AMIVONO_LOG_LEVEL": "INFO",
}
os.environ.update(TEST_ENV)

from sandbox.instances import Instance, instances  # noqa: E402
from sandbox.settings import SandboxSettings  # noqa: E402
from service.store import database  # noqa: E402  (settings read the environment above)
from service.store.api_keys import create_key  # noqa: E402

API = f"http://127.0.0.1:{TEST_ENV['AMIVONO_API_PORT']}"
LOG_DIR = Path(os.environ.get("AMIVONO_TEST_LOGS", f"/tmp/amivono-test-logs{SLOT or ''}"))


async def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


class Proc:
    """An `amivono` subcommand run as its own process, as an operator would."""

    def __init__(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = LOG_DIR / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service", *args],
            env={**os.environ, **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 20.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture(scope="session")
def settings() -> SandboxSettings:
    return SandboxSettings.from_env()


@pytest.fixture(scope="session")
async def db(settings: SandboxSettings) -> AsyncIterator[str]:
    """A fresh test database with the schema applied."""
    admin = await asyncpg.connect(settings.database_url.rsplit("/", 1)[0] + "/postgres")
    name = settings.database_url.rsplit("/", 1)[1]
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    await database.migrate(settings.database_url)
    yield settings.database_url


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


async def wait_healthy(base: str, proc: Proc, timeout: float = 20.0) -> None:
    async with httpx.AsyncClient() as client:

        async def up() -> bool:
            if proc.proc.poll() is not None:
                raise AssertionError(f"{proc.name} exited:\n{proc.log()[-3000:]}")
            try:
                return (await client.get(f"{base}/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_for(up, timeout, what=f"{proc.name} to answer")


@pytest.fixture(scope="session")
async def api(db: str) -> AsyncIterator[str]:
    proc = Proc("api", "api")
    await wait_healthy(API, proc)
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


def start_dispatcher(name: str, **env: str) -> Proc:
    return Proc(f"dispatcher-{name}", "dispatcher", env={"AMIVONO_DISPATCHER_NAME": name, **env})


@pytest.fixture(scope="module")
async def dispatcher(db: str, sandbox: dict[str, Instance]) -> AsyncIterator[Proc]:
    proc = start_dispatcher(f"d-{os.getpid()}-{time.time_ns()}")
    yield proc
    proc.stop()
