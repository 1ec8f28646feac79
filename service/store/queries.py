"""The named SQL statements, one file per table in `service/store/sql/`.

Each statement is reviewable where it is written; code calls it by name, for
example `queries.sms_messages.claim_due_sends(conn, ...)`. Statements that
return rows give a list (aiosql itself yields them one by one).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiosql
from aiosql.types import SQLOperationType

SQL_DIR = Path(__file__).parent / "sql"


def _as_list(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def run(conn: Any, **params: Any) -> list[Any]:
        return [row async for row in fn(conn, **params)]

    return run


def _table(path: Path) -> SimpleNamespace:
    loaded = aiosql.from_path(path, "asyncpg", mandatory_parameters=False)
    statements = {}
    for name in loaded.available_queries:
        if name.endswith("_cursor"):
            continue
        fn = getattr(loaded, name)
        statements[name] = _as_list(fn) if fn.operation == SQLOperationType.SELECT else fn
    return SimpleNamespace(**statements)


queries = SimpleNamespace(**{p.stem: _table(p) for p in sorted(SQL_DIR.glob("*.sql"))})
