"""Safe HTTP egress for webhooks: resolve the host, refuse internal addresses
(service/domain/egress.py), connect to the very address that was checked (a
resolver pinned to it, so DNS rebinding cannot slip another in), follow no
redirects, and read at most 64 KiB of the answer."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from service.domain.egress import Network, RefusedUrl, split_url, why_refused

MAX_RESPONSE_BYTES = 64 * 1024
CONNECT_SECONDS = 5.0
TOTAL_SECONDS = 15.0


async def resolve_checked(url: str, allowed: tuple[Network, ...]) -> tuple[str, int, str]:
    """(host, port, address) for a URL whose host resolves to an address a
    webhook may reach; RefusedUrl otherwise."""
    _, host, port = split_url(url)
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            infos = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM), 5.0)
        except (OSError, TimeoutError, UnicodeError) as exc:  # UnicodeError: not a valid name
            raise RefusedUrl(f"the host {host!r} does not resolve: {exc}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    reasons = []
    for address in addresses:
        reason = why_refused(ipaddress.ip_address(address), allowed)
        if reason is None:
            return host, port, address
        reasons.append(reason)
    raise RefusedUrl(f"the host {host!r} is not a public address ({'; '.join(reasons)})")


class _Pinned(AbstractResolver):
    """Answers every lookup with the address already checked."""

    def __init__(self, address: str, port: int) -> None:
        self.address, self.port = address, port

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        fam = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        return [{"hostname": host, "host": self.address, "port": self.port, "family": fam,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        return None


@dataclass(frozen=True)
class Sent:
    ok: bool
    status_code: int | None
    error: str | None
    latency_ms: int


async def post(url: str, body: bytes, headers: dict[str, str],
               allowed: tuple[Network, ...]) -> Sent:
    started = time.monotonic()

    def done(ok: bool, status: int | None, error: str | None) -> Sent:
        return Sent(ok, status, error, int((time.monotonic() - started) * 1000))

    try:
        _, port, address = await resolve_checked(url, allowed)
    except RefusedUrl as exc:
        return done(False, None, f"refused: {exc}")
    connector = aiohttp.TCPConnector(resolver=_Pinned(address, port), force_close=True,
                                     limit=1)
    timeout = aiohttp.ClientTimeout(total=TOTAL_SECONDS, connect=CONNECT_SECONDS)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            async with session.post(url, data=body, headers=headers,
                                    allow_redirects=False) as response:
                await response.content.read(MAX_RESPONSE_BYTES)
                ok = 200 <= response.status < 300
                return done(ok, response.status, None if ok else f"HTTP {response.status}")
    except TimeoutError:
        return done(False, None, "timed out")
    except aiohttp.ClientError as exc:
        return done(False, None, f"{type(exc).__name__}: {exc}")
