"""Requests per hour per account, counted in PostgreSQL so every API process
shares one count. Headers follow GitHub's X-RateLimit-* convention."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from .api_keys import Account
from .http_errors import ApiError
from .queries import queries


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


async def count_request(pool: asyncpg.Pool, account: Account, default_limit: int) -> RateLimit:
    """Count one request; raise 429 once the account is past its limit."""
    limit = account.rate_limit_per_hour
    if limit is None:
        limit = default_limit
    row = await queries.rate_limit_windows.count_request(pool, account_id=account.id)
    rate = RateLimit(limit, row["used"], row["reset_at"], max(1, row["reset_in"]))
    if rate.exceeded:
        raise ApiError(
            429,
            f"API rate limit exceeded for account {account.name!r}: {limit} requests per hour",
            headers={**rate.headers(), "Retry-After": str(rate.reset_in)},
        )
    return rate
