"""Schema migrations: applied once however many processes start together."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import asyncpg

from service.store.database import migration_files

from .conftest import SLOT

NAME = f"amivono_migrate_test{SLOT or ''}"
DSN = f"postgresql://postgres@127.0.0.1:5432/{NAME}"


async def test_several_processes_migrating_at_once_apply_each_migration_once(db):
    admin = await asyncpg.connect(db.rsplit("/", 1)[0] + "/postgres")
    await admin.execute(f"DROP DATABASE IF EXISTS {NAME} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {NAME}")
    try:
        env = {**os.environ, "AMIVONO_DATABASE_URL": DSN}
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "service", "migrate"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        outputs = [await asyncio.to_thread(p.communicate, timeout=60) for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, outputs
        applied = [line for out, _ in outputs for line in out.splitlines()]
        assert sorted(applied) == [f"applied {name}" for _, name, _ in migration_files()]
        conn = await asyncpg.connect(DSN)
        try:
            versions = [
                r["version"]
                for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
            ]
            assert versions == [v for v, _, _ in migration_files()]
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {NAME} WITH (FORCE)")
        await admin.close()
