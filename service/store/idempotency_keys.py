"""Idempotency keys as stored: the response of the request that created a
resource, saved in the transaction that created it (service/http/idempotency.py
has the rules of the header)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.domain.refusals import Reason, Refused
from service.store.database import Executor
from service.store.queries import queries

HEADER = "Idempotency-Key"


@dataclass(frozen=True)
class Reservation:
    """A key taken by one request (`reserved_at` tells it from a later takeover)."""
    account_id: int
    key: str
    reserved_at: datetime


def taken_over() -> Refused:
    return Refused(Reason.CONFLICT, f"This {HEADER} was taken over by a later request; "
                                    "fetch that request's result")


async def store_created(conn: Executor, reservation: Reservation, body: dict[str, Any],
                        location: str | None) -> None:
    """The 201 into the reservation, in the creating transaction; refused
    (and so nothing created) when a later request took the key over."""
    stored = await queries.idempotency_keys.store_response(
        conn, account_id=reservation.account_id, key=reservation.key,
        reserved_at=reservation.reserved_at, status=201, body=json.dumps(body),
        location=location)
    if stored is None:
        raise taken_over()


async def store_created_many(conn: Executor,
                             created: list[tuple[Reservation, dict[str, Any]]]) -> bool:
    """store_created for the creates of one batch (location: the body's
    `url`), in one statement; False when any key was taken over (then the
    transaction must not commit)."""
    stored = await queries.idempotency_keys.store_responses(
        conn, account_ids=[r.account_id for r, _ in created],
        keys=[r.key for r, _ in created], reserved_ats=[r.reserved_at for r, _ in created],
        bodies=[json.dumps(body) for _, body in created],
        locations=[body["url"] for _, body in created])
    return len(stored) == len(created)
