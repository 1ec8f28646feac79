"""Numbers owned by accounts: the senders an account may use (under the
`owned` sender policy), and where inbound SMS are routed."""

from __future__ import annotations

from typing import Any

from service.domain.json_schema import E164, TIMESTAMP, Fields
from service.domain.timestamps import iso
from service.store.database import Executor
from service.store.queries import queries


class TakenNumber(Exception):
    """The number belongs to another account."""


async def add(conn: Executor, account_id: int, number: str) -> None:
    if await queries.phone_numbers.add(conn, number=number, account_id=account_id) is None:
        raise TakenNumber(f"{number} belongs to another account")


async def remove(conn: Executor, account_id: int, number: str) -> bool:
    return await queries.phone_numbers.remove(
        conn, number=number, account_id=account_id) is not None


FIELDS: Fields = {"number": E164, "created_at": TIMESTAMP}


def render(row: Any) -> dict[str, Any]:
    return {"number": row["number"], "created_at": iso(row["created_at"])}
