"""Requests per hour per account, counted in PostgreSQL so every API process
shares one count. Headers follow GitHub's X-RateLimit-* convention."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from service.domain.refusals import Reason, Refused
from service.store.api_keys import Account, unauthorized
from service.store.queries import queries
from service.store.write_batches import WriteBatch


@dataclass(frozen=True)
class RateLimit:
    limit: int
    used: int
    reset_at: int  # epoch seconds
    reset_in: int  # seconds

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    @property
    def exceeded(self) -> bool:
        return self.used > self.limit

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Used": str(self.used),
            "X-RateLimit-Reset": str(self.reset_at),
        }


async def _count(asked: list[tuple[asyncpg.Pool, bytes]]) -> list[Any]:
    """Count requests that came together: one statement per key (in the order
    they came), each request given the count its own increment reached."""
    by_key: dict[tuple[asyncpg.Pool, bytes], list[int]] = {}
    for i, pool_and_key in enumerate(asked):
        by_key.setdefault(pool_and_key, []).append(i)
    out: list[Any] = [None] * len(asked)
    for (pool, key_hash), places in by_key.items():
        try:
            row = await queries.rate_limit_windows.admit_key(pool, key_hash=key_hash,
                                                             n=len(places))
        except Exception as exc:  # noqa: BLE001 (each request of this key fails with it)
            for i in places:
                out[i] = exc
            continue
        if row is not None:
            first = row["used"] - len(places)
            for k, i in enumerate(places):
                out[i] = {**row, "used": first + k + 1}
    return out


# Requests that come while a count is in flight are counted in the next one:
# the account's one window row is updated once for them all instead of once
# each, every update waiting for the previous one's commit.
_counts: WriteBatch[tuple[asyncpg.Pool, bytes], Any] = WriteBatch(_count)


async def admit(pool: asyncpg.Pool, key_hash: bytes | None,
                default_limit: int) -> tuple[Account, RateLimit]:
    """The account of the request's key (`hash_key` of its Bearer token, None
    when it sent none), its request counted; 401 for a missing or bad key,
    429 once the account is past its limit (one round trip)."""
    if key_hash is None:
        raise unauthorized(token_given=False)
    row = await _counts.add((pool, key_hash))
    if row is None:
        raise unauthorized(token_given=True)
    account = Account(row["account_id"], row["name"], row["rate_limit_per_hour"])
    limit = default_limit if account.rate_limit_per_hour is None else account.rate_limit_per_hour
    rate = RateLimit(limit, row["used"], row["reset_at"], max(1, row["reset_in"]))
    if rate.exceeded:
        raise Refused(Reason.RATE_LIMITED,
            f"API rate limit exceeded for account {account.name!r}: {limit} requests per hour",
            headers={**rate.headers(), "Retry-After": str(rate.reset_in)},
        )
    return account, rate
