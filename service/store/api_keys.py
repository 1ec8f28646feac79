"""API keys: `Authorization: Bearer <key>` identifies an account.

Keys are 256 random bits; only their SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import asyncpg

from service.domain.refusals import Reason, Refused
from service.store.queries import queries

KEY_PREFIX = "amv_"


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    rate_limit_per_hour: int | None


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


async def create_key(pool: asyncpg.Pool, account_name: str) -> str:
    """Create the account if needed and a new key for it; return the key."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    async with pool.acquire() as conn, conn.transaction():
        account = await queries.accounts.ensure_account(conn, name=account_name)
        await queries.api_keys.create_key(
            conn, account_id=account["id"], key_hash=hash_key(key), prefix=key[:10]
        )
    return key


async def active_key_hashes(pool: asyncpg.Pool) -> frozenset[bytes]:
    return frozenset(row["key_hash"] for row in await queries.api_keys.active_key_hashes(pool))


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def unauthorized(token_given: bool) -> Refused:
    if not token_given:
        return Refused(Reason.UNAUTHORIZED,
                       "Requires authentication: send 'Authorization: Bearer <key>'",
                       headers={"WWW-Authenticate": 'Bearer realm="amivono"'})
    return Refused(Reason.UNAUTHORIZED, "Bad credentials: the API key is unknown or revoked",
                    headers={"WWW-Authenticate": 'Bearer realm="amivono", error="invalid_token"'})
