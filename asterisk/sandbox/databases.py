"""Throw-away PostgreSQL databases for the tests and the benchmarks: each run
starts from an empty database of its own and may drop it at the end."""

from __future__ import annotations

import asyncpg

from service.store import database


def _split(url: str) -> tuple[str, str]:
    """(the server's maintenance database URL, the database's name)."""
    server, _, name = url.rpartition("/")
    return f"{server}/postgres", name


async def drop_database(url: str) -> None:
    """Drop the database of `url`, even with sessions still connected to it."""
    admin_url, name = _split(url)
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def fresh_database(url: str, migrate: bool = True) -> str:
    """The database of `url` dropped and created empty, then (unless `migrate`
    is false) the schema applied as `amivono migrate` does; returns `url`."""
    await drop_database(url)
    admin_url, name = _split(url)
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    if migrate:
        await database.migrate(url)
    return url
