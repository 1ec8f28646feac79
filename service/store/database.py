"""Connections to PostgreSQL and the schema migrations.

Migrations are the numbered files in `service/store/migrations/`, applied in order,
each in its own transaction, under an advisory lock so that several processes
starting at once apply each exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

log = logging.getLogger(__name__)
T = TypeVar("T")

# Anything a named statement runs on: a pool, a connection, or a pooled one.
Executor = asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# What a lost or restarting PostgreSQL raises: an outage to wait out, never a
# bug. The one place that says so; `except OUTAGE:` everywhere else.
# InternalClientError ("cannot switch to state 12; another operation (2) is
# in progress"): a stopping server sends every idle session an ErrorResponse
# (57P01) and then closes it. asyncpg does not expect a message on an idle
# connection: it parks the protocol in its error-consuming state (2) until a
# ReadyForQuery that never comes, and the close is only seen a moment later.
# A pooled connection taken in that moment fails with this error; the close
# then drops it from the pool. It is the restart itself, an outage like the
# refused connections that follow (measured: about 5 per restart with 8
# busy tasks, none once the server was back).
OUTAGE: tuple[type[BaseException], ...] = (
    OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)

class OutageLasted(Exception):
    """The database stayed away through every retry of through_outages."""


class BatchRefused(Exception):
    """A batched write failed for a reason other than the database being
    away (a bad record, a deadlock): its records are then written one by one,
    so each fails or succeeds on its own, as if never batched."""


def refused_as_batch(exc: BaseException) -> BaseException:
    """What a batched write raises for `exc`: the same outage (retried as
    one), or BatchRefused for anything else PostgreSQL refused."""
    if isinstance(exc, asyncpg.PostgresError) and not isinstance(exc, UNAVAILABLE):
        return BatchRefused(f"{type(exc).__name__}: {exc}")
    return exc


# Also what through_outages raises when its retries ran out.
OUTAGE_OR_LASTED: tuple[type[BaseException], ...] = (*OUTAGE, OutageLasted)


class OutageLog:
    """Logs an outage once when it starts and once when it ends, however
    many failures it is made of (a restart is hundreds of them)."""

    def __init__(self, what: str, logger: logging.Logger | None = None) -> None:
        self.what = what
        self.since: float | None = None
        self._log = logger or log

    def failed(self, exc: BaseException) -> None:
        if self.since is None:
            self.since = time.monotonic()
            self._log.warning("%s: database unavailable, waiting it out (%s: %s)",
                              self.what, type(exc).__name__, exc)

    def recovered(self) -> None:
        if self.since is not None:
            self._log.warning("%s: database back after %.1f s", self.what,
                              time.monotonic() - self.since)
            self.since = None


class Backoff:
    """Delays that double from `first` to `cap`, with jitter so that many
    waiting processes do not return in step; reset() after a success."""

    def __init__(self, first: float = 0.2, cap: float = 10.0) -> None:
        self.first = first
        self.cap = cap
        self._next = first

    def reset(self) -> None:
        self._next = self.first

    def next(self) -> float:
        delay = self._next * (1 + random.random() / 4)
        self._next = min(self.cap, self._next * 2)
        return delay


async def until_back(write: Callable[[], Awaitable[T]], what: str) -> T:
    """Run `write`, retrying with backoff for as long as the database is
    away (an outcome already happened and must be written, however long the
    outage); the outage logged once when it starts and once when it ends."""
    outage = OutageLog(what)
    backoff = Backoff()
    while True:
        try:
            result = await write()
        except OUTAGE as exc:
            outage.failed(exc)
            await asyncio.sleep(backoff.next())
            continue
        outage.recovered()
        return result


async def through_outages(write: Callable[[], Awaitable[T]], what: str,
                          delays: tuple[float, ...] = (0.0, 0.5, 2.0, 5.0)) -> T:
    """Run `write`, retrying through a short database outage (logged each
    time); OutageLasted when it outlasts the delays."""
    for delay in delays:
        await asyncio.sleep(delay)
        try:
            return await write()
        except OUTAGE as exc:
            log.warning("%s failed: %s", what, exc)
    raise OutageLasted(what)


# The part of an outage that means "the database cannot be reached now" (the
# API answers 503 with Retry-After); other PostgreSQL errors are bugs (500).
# OSError: refused, reset and timed-out connections (ConnectionError and
# TimeoutError are OSErrors); TooManyConnections: the server is full.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError, asyncpg.InterfaceError, asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
    asyncpg.exceptions.OperatorInterventionError, asyncpg.TooManyConnectionsError)
# OSErrors about files, not sockets: a bug or a full disk, never the database
# being away (they must not become a 503 the client would retry forever).
NOT_UNREACHABLE: tuple[type[BaseException], ...] = (
    FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError,
    NotADirectoryError)


def unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached now (UNAVAILABLE,
    but not a file's OSError)."""
    return isinstance(exc, UNAVAILABLE) and not isinstance(exc, NOT_UNREACHABLE)


# Arbitrary constant shared by every Amivono process: "amivono" in ASCII.
MIGRATION_LOCK = 0x616D69766F6E6F


def migration_files() -> list[tuple[int, str, Path]]:
    out = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        version = int(path.name.split("_", 1)[0])
        out.append((version, path.stem, path))
    return out


async def migrate(dsn: str) -> list[str]:
    """Apply pending migrations; return the names applied by this call."""
    conn = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, name, path in migration_files():
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        version,
                        name,
                    )
                log.info("applied migration %s", name)
                applied.append(name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    finally:
        await conn.close()
    return applied


class _FloorRetries(logging.Filter):
    """asyncpg's pool logs a traceback each second it cannot reconnect its
    minimum of connections: hundreds of lines for one outage, which our
    callers log once (OutageLog) instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pool connection floor" not in record.getMessage()


logging.getLogger("asyncpg.pool").addFilter(_FloorRetries())


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's RESET ALL / UNLISTEN round trip: our
    pooled connections keep no session state (LISTEN has its own connection)."""


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size,
                                     reset=_keep_session)


async def ensure_database(dsn: str) -> None:
    """Create the database named in `dsn` if it does not exist (demo and tests)."""
    name = dsn.rsplit("/", 1)[1].split("?", 1)[0]
    admin_dsn = dsn.rsplit("/", 1)[0] + "/postgres"
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            # Identifiers cannot be bound as parameters; quote it instead.
            quoted = '"' + name.replace('"', '""') + '"'
            try:
                await conn.execute(f"CREATE DATABASE {quoted}")
            except asyncpg.DuplicateDatabaseError:
                pass
    finally:
        await conn.close()
