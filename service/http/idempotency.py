"""Idempotency-Key on POST: a retried request gets the first response back.

Keys are scoped per account and live 24 hours. The same key with the same
body replays the stored response; with another body it is refused (422);
while the first request is still being processed, a duplicate gets 409.
The response is stored in the transaction that creates the resource, so
a key is never stored without its resource, nor the other way round.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.domain.refusals import FieldError, Reason, Refused, validation_failed
from service.store.api_keys import Account
from service.store.database import OUTAGE, until_back
from service.store.idempotency_keys import HEADER as HEADER
from service.store.idempotency_keys import Reservation, store_created
from service.store.queries import queries

_releasing: set[asyncio.Task[None]] = set()  # releases waiting for the database
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: dict[str, Any]
    location: str | None


def request_hash(method: str, path: str, body: Any) -> bytes:
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).digest()


def check_key(key: str, resource: str) -> None:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
        raise validation_failed(
            [
                FieldError(
                    resource,
                    HEADER,
                    "invalid",
                    f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
                )
            ]
        )


async def reserve(
    pool: asyncpg.Pool, account_id: int, key: str, digest: bytes, resource: str
) -> StoredResponse | datetime:
    """Take the key (returning the reservation's time, which identifies it),
    or return the stored response to replay; raise on conflicts."""
    taken = await queries.idempotency_keys.reserve_key(
        pool, account_id=account_id, key=key, request_hash=digest
    )
    if taken is not None:
        reserved_at: datetime = taken["created_at"]
        return reserved_at
    row = await queries.idempotency_keys.get_key(pool, account_id=account_id, key=key)
    if row is None:  # expired and purged between the two statements: try once more
        taken = await queries.idempotency_keys.reserve_key(
            pool, account_id=account_id, key=key, request_hash=digest
        )
        if taken is not None:
            retaken_at: datetime = taken["created_at"]
            return retaken_at
        raise Refused(Reason.CONFLICT, f"A request with this {HEADER} is still in progress")
    if bytes(row["request_hash"]) != digest:
        raise validation_failed(
            [
                FieldError(
                    resource,
                    HEADER,
                    "invalid",
                    f"this {HEADER} was already used with a different request body",
                )
            ]
        )
    if row["response_status"] is None:
        raise Refused(Reason.CONFLICT,
            f"A request with this {HEADER} is still in progress; retry later")
    body = row["response_body"]
    if isinstance(body, str):
        body = json.loads(body)
    return StoredResponse(row["response_status"], body, row["response_location"])


async def release(pool: asyncpg.Pool, account_id: int, key: str, reserved_at: datetime) -> None:
    await queries.idempotency_keys.release_key(
        pool, account_id=account_id, key=key, reserved_at=reserved_at)


Create = Callable[[asyncpg.Connection], Awaitable[tuple[dict[str, Any], str]]]
# A create committed by itself (the store's batched creates): given the key's
# reservation (None without the header), it stores the response with the
# resource, or refuses both.
CreateCommitted = Callable[[Reservation | None], Awaitable[dict[str, Any]]]


async def create_once(request: Request, account: Account, resource: str, path: str,
                      body: Any, create: Create,
                      committed: CreateCommitted | None = None) -> Response:
    """Run `create` (or `committed`, when given) unless this Idempotency-Key
    already did; answer 201 with its body and Location, or replay the first
    answer. With a key, the creation and the stored answer commit together."""
    pool = request.app.state.pool
    key = request.headers.get(HEADER)
    if key is None:
        if committed is not None:
            out = await committed(None)
            return created(out, out["url"])
        # A transaction all the same: the destination guard's lock
        # (store/destination_guards.py) holds until the message is committed.
        async with pool.acquire() as conn, conn.transaction():
            out, location = await create(conn)
        return created(out, location)
    check_key(key, resource)
    reserved = await reserve(pool, account.id, key, request_hash("POST", path, body), resource)
    if isinstance(reserved, StoredResponse):
        headers = {"Idempotent-Replayed": "true"}
        if reserved.location:
            headers["Location"] = reserved.location
        return _json(reserved.body, reserved.status, headers)
    reservation = Reservation(account.id, key, reserved)
    try:
        if committed is not None:
            out = await committed(reservation)
            location = out["url"]
        else:
            async with pool.acquire() as conn, conn.transaction():
                out, location = await create(conn)
                await store_created(conn, reservation, out, location)
    except BaseException:
        try:
            await release(pool, account.id, key, reserved)
        except OUTAGE:
            # The database went away mid-request: free the key as soon as it
            # is back, or the client's retry would get 409 for two minutes.
            _releasing.add(task := asyncio.create_task(until_back(
                lambda: release(pool, account.id, key, reserved), "idempotency key release")))
            task.add_done_callback(_releasing.discard)
        raise
    return created(out, location)


def created(out: dict[str, Any], location: str) -> Response:
    """The 201 of a create, its body the new resource."""
    return _json(out, 201, {"Location": location})


def _json(body: dict[str, Any], status: int, headers: dict[str, str]) -> Response:
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(content, status_code=status, headers=headers,
                    media_type=JSONResponse.media_type)
