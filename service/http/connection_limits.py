"""Deadlines and a cap on the API's HTTP connections.

uvicorn bounds only the idle time between requests (`timeout_keep_alive`). A
client that opens a connection and says nothing, trickles its headers or its
body, or opens thousands of connections would hold them forever. This is
uvicorn's httptools protocol with what it lacks:
- a header deadline: the request line and headers complete within
  `http_header_seconds` of the connection (or of the request's first byte on a
  kept-alive one), at most `MAX_HEADER_BYTES` (give or take the last read);
  else 408 (431) and close;
- a minimum body rate, as Kestrel's MinRequestBodyDataRate: after a grace of
  `http_body_seconds` the body must have averaged `http_body_bytes_per_second`;
  else 408 and close (a 20 MB upload at 64 KiB/s passes, 1 byte/s does not);
- a connection cap: past `http_max_connections` open connections a new one is
  answered 503 with Retry-After and closed before anything is read.
"""

from __future__ import annotations

import asyncio
import json
import logging
from asyncio import TimerHandle
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.settings import Settings

log = logging.getLogger("amivono.http")

MAX_HEADER_BYTES = 64 * 1024


@dataclass(frozen=True)
class ConnectionLimits:
    header_seconds: float
    body_seconds: float
    body_bytes_per_second: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(settings.http_header_seconds, settings.http_body_seconds,
                   settings.http_body_bytes_per_second, settings.http_max_connections)


def _answer(status: str, message: str, extra: str = "") -> bytes:
    body = json.dumps({"message": message}).encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n{extra}\r\n").encode() + body


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's `http` protocol class for the API (see the module's text)."""

    # Set by the process before it serves; uvicorn's worker processes read the
    # environment (they import this module anew).
    limits: ConnectionLimits | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if LimitedHttpProtocol.limits is None:
            LimitedHttpProtocol.limits = ConnectionLimits.from_settings(Settings.from_env())
        self._limits = LimitedHttpProtocol.limits
        self._deadline: TimerHandle | None = None
        self._header_bytes = 0  # of the request being read; -1 once its headers are in
        self._body_started = 0.0
        self._body_bytes = 0
        self._refused = False

    # --- the connection ---------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self._limits.max_connections:
            # Refused before anything is read; uvicorn never learns of it.
            self._refused = True
            self.transport = transport
            transport.write(_answer("503 Service Unavailable",
                                    "Too many connections; retry later", "retry-after: 1\r\n"))
            transport.close()
            return
        super().connection_made(transport)
        self._arm(self._limits.header_seconds, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        # Counted once the parser has had the bytes: a chunk that completes the
        # headers may carry the body too. Still in the headers, they are all head.
        if self._header_bytes >= 0:
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self._close_with("431 Request Header Fields Too Large",
                                 f"Request headers are larger than {MAX_HEADER_BYTES} bytes")

    # --- parser callbacks -------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_bytes < 0:  # the next request on a kept-alive connection
            self._header_bytes = 0
            self._arm(self._limits.header_seconds, self._headers_late)

    def on_headers_complete(self) -> None:
        self._header_bytes = -1
        self._body_bytes = 0
        self._body_started = self.loop.time()
        self._arm(self._limits.body_seconds, self._body_check)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    # --- deadlines --------------------------------------------------------
    def _arm(self, delay: float, callback: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_late(self) -> None:
        self._deadline = None
        self._close_with("408 Request Timeout",
                         f"Request headers not received within {self._limits.header_seconds:g} s")

    def _body_check(self) -> None:
        """Due when the body falls below the minimum average rate; if bytes came
        since, the next check is when they would no longer suffice."""
        self._deadline = None
        limits = self._limits
        due = (self._body_started + limits.body_seconds
               + self._body_bytes / limits.body_bytes_per_second)
        now = self.loop.time()
        if due > now:
            self._deadline = self.loop.call_later(due - now, self._body_check)
            return
        self._close_with("408 Request Timeout",
                         f"Request body slower than {limits.body_bytes_per_second:g} bytes/s "
                         f"after {limits.body_seconds:g} s")

    def _close_with(self, status: str, message: str) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        cycle = self.cycle
        answered = cycle is not None and cycle.response_started
        if cycle is not None and not cycle.response_complete:
            # The handler still waiting for the body gets a disconnect, not the bytes.
            cycle.disconnected = True
            cycle.message_event.set()
        if not answered:
            self.transport.write(_answer(status, message))
        log.info("http: %s from %s: %s", status, self.client[0] if self.client else "?", message)
        self.transport.close()
