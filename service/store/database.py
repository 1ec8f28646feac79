"""Connections to PostgreSQL and the schema migrations.

Migrations are the numbered files in `service/store/migrations/`, applied in order,
each in its own transaction, under an advisory lock so that several processes
starting at once apply each exactly once.
"""

from __future__ import annotations

import asyncio
import logging
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
# InternalClientError: a connection left mid-operation by a server restart
# ("cannot switch to state 12; another operation is in progress").
OUTAGE: tuple[type[BaseException], ...] = (
    OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
class OutageLasted(Exception):
    """The database stayed away through every retry of through_outages."""


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
UNAVAILABLE: tuple[type[BaseException], ...] = (
    ConnectionError, TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
    asyncpg.exceptions.OperatorInterventionError)
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
