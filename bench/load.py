"""Load generators: wrk for a fixed request at full speed, and `drive`, a raw
asyncio HTTP/1.1 client for a list of requests, as fast as answered or paced."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from stack import BENCH_DIR, LOG_DIR, SetupError

# --- a raw HTTP/1.1 keep-alive client -------------------------------------------


class RawHttp:
    """A minimal HTTP/1.1 client on one keep-alive connection: the Python
    driver must not be the bottleneck of what it measures."""

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        close = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        data = await self.reader.readexactly(length) if length else b""
        if close:
            await self.close()
        return status, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


@dataclass
class Sent:
    index: int
    sent_at: float  # time.time() when the request was written
    done_at: float  # time.time() when the answer was read
    status: int
    body: bytes


async def drive(base: str, requests: list[tuple[str, str, bytes, dict[str, str]]],
                concurrency: int, rate: float = 0.0, timeout: float = 300.0) -> list[Sent]:
    """Send `requests` (method, path, body, headers) over `concurrency` keep-alive
    connections: as fast as they answer, or open-loop at `rate` per second."""
    out: list[Sent] = []
    next_index = 0
    start = time.monotonic()

    async def worker() -> None:
        nonlocal next_index
        client = RawHttp(base)
        try:
            while next_index < len(requests):
                i = next_index
                next_index += 1
                if rate:
                    delay = start + i / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                method, path, body, headers = requests[i]
                sent = time.time()
                status, data = await client.request(method, path, body, headers)
                out.append(Sent(i, sent, time.time(), status, data))
        finally:
            await client.close()

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), timeout)
    return sorted(out, key=lambda s: s.index)


# --- wrk -------------------------------------------------------------------------------

@dataclass
class WrkResult:
    ok: int
    bad: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: str
    output: str

    @property
    def ok_per_second(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def wrk(url: str, seconds: float, connections: int, threads: int,
        env: dict[str, str], name: str) -> WrkResult:
    """wrk with bench/wrk_count.lua: counts only the expected answers."""
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:.0f}s",
           "--latency", "--timeout", "10s", "-s", str(BENCH_DIR / "wrk_count.lua"), url]
    out = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True,
                         timeout=seconds + 60)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    (LOG_DIR / f"wrk-{name}.log").write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        raise SetupError(f"wrk failed: {out.stderr}")
    values = dict(re.findall(r"^BENCH (\w+)=(\S+)$", out.stdout, re.M))
    if "ok" not in values:
        raise SetupError(f"wrk printed no counts:\n{out.stdout}\n{out.stderr}")
    errors = re.search(r"Socket errors:.*", out.stdout)
    return WrkResult(
        ok=int(values["ok"]), bad=int(values["bad"]),
        seconds=int(values["duration_us"]) / 1e6,
        p50_ms=int(values["p50_us"]) / 1000, p90_ms=int(values["p90_us"]) / 1000,
        p99_ms=int(values["p99_us"]) / 1000,
        errors=errors.group(0) if errors else "", output=out.stdout)
