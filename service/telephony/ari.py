"""A thin asyncio client for the Asterisk REST Interface (ARI).

Our own rather than PyPI's: `ari` (ari-py) does not import on Python 3, and
`ari-client` has no reconnect logic. We need a handful of REST calls and an
event WebSocket that comes back by itself, with backoff, when Asterisk
restarts. aiohttp does the REST calls (a quarter of httpx's CPU per request,
measured: the dispatcher makes two per SMS) and websockets the events.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import websockets

log = logging.getLogger(__name__)

EventHandler = Callable[[dict[str, Any]], Awaitable[None]]

# Console lines that go out in one request at most (see AriClient.console_line).
CONSOLE_BATCH = 50


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("ARI background task failed", exc_info=task.exception())


class AriError(Exception):
    def __init__(self, status: int | None, message: str, *, sent: bool = True) -> None:
        super().__init__(f"ARI {status}: {message}" if status else f"ARI: {message}")
        self.status = status
        self.message = message
        self.sent = sent  # False: no connection was made, the request never left

    @property
    def not_done(self) -> bool:
        """Asterisk certainly did not do it: the request never reached it
        (connection refused, no route), or it answered 5xx, which ARI does
        only when it could not do what was asked. A timeout or a connection
        dropped after sending is not this: the request may have been done."""
        return not self.sent or (self.status is not None and self.status >= 500)

    @property
    def not_sent(self) -> bool:
        """The request never reached Asterisk (no connection could be made):
        it can be made on another node without risk of a duplicate."""
        return not self.sent

    @property
    def retryable(self) -> bool:
        # Unreachable Asterisk or its own trouble: try again later. A 4xx means
        # the request itself is wrong and will stay wrong.
        return self.status is None or self.status >= 500


class AriClient:
    def __init__(
        self, base_url: str, user: str, password: str, app: str, timeout: float = 10.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.app = app
        self._auth = (user, password)
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None  # made in the running loop
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.last_error: str | None = None  # why the event WebSocket last failed
        self._console: dict[str, list[str]] = {}  # variable -> lines not yet shown
        self._console_tasks: dict[str, asyncio.Task[None]] = {}

    async def close(self) -> None:
        for task in list(self._console_tasks.values()):
            task.cancel()
        if self._session is not None:
            await self._session.close()

    def console_line(self, variable: str, line: str) -> None:
        """Show `line` on the Asterisk console without waiting: setting a
        global variable logs "Setting global variable 'V' to '...'" at verbose
        level 2. Lines that come while the previous request is in flight go
        out together in the next one (joined by " | "), so under load a line
        costs a fraction of an ARI request instead of one request each, and at
        a low rate each line is still a request of its own, at once."""
        self._console.setdefault(variable, []).append(line)
        if variable not in self._console_tasks:
            task = asyncio.create_task(self._show(variable))
            self._console_tasks[variable] = task
            task.add_done_callback(_log_failure)

    async def _show(self, variable: str) -> None:
        pending = self._console[variable]
        try:
            while pending:
                batch = pending[:CONSOLE_BATCH]
                del pending[:CONSOLE_BATCH]
                try:
                    await self.set_global(variable, " | ".join(batch))
                except AriError as exc:  # a courtesy for whoever watches the console
                    log.debug("console line failed: %s", exc)
        finally:
            del self._console_tasks[variable]

    async def request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json_body: Any = None
    ) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers, timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=64))
        try:
            async with self._session.request(method, self.base_url + path, params=params,
                                             json=json_body) as response:
                status, content = response.status, await response.read()
        except aiohttp.ClientConnectorError as exc:  # before anything was sent
            raise AriError(None, f"{type(exc).__name__}: {exc}", sent=False) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AriError(None, f"{type(exc).__name__}: {exc}") from exc
        if status >= 400:
            text = content.decode(errors="replace")
            try:
                message = json.loads(text).get("message", text)
            except (ValueError, AttributeError):
                message = text
            raise AriError(status, message)
        return json.loads(content) if content else None

    async def send_message(
        self, to: str, from_: str, body: str, variables: dict[str, str] | None = None
    ) -> None:
        """PUT /endpoints/sendMessage: Asterisk accepts it with 202 and sends
        the SIP MESSAGE on its own; the far end's answer is not reported."""
        await self.request(
            "PUT",
            "/endpoints/sendMessage",
            params={"to": to, "from": from_, "body": body},
            json_body={"variables": variables or {}},
        )

    async def set_global(self, name: str, value: str) -> None:
        await self.request("POST", "/asterisk/variable", params={"variable": name, "value": value})

    async def subscribe(self, event_source: str) -> None:
        """Have this app's WebSocket receive a source's events, e.g.
        `endpoint:PJSIP/carrier` for the SMS the trunk delivers."""
        await self.request("POST", f"/applications/{self.app}/subscription",
                           params={"eventSource": event_source})

    async def info(self) -> Any:
        return await self.request("GET", "/asterisk/info")

    def _events_url(self) -> str:
        url = self.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        return f"{url}/events?app={self.app}&subscribeAll=false"

    async def originate(self, *, endpoint: str, channel_id: str, caller_id: str,
                        timeout: int, app_args: str, formats: str = "ulaw,alaw") -> Any:
        """POST /channels: the channel enters our Stasis app when answered.
        A 409 means a channel with this id exists already (placed before)."""
        return await self.request("POST", "/channels", params={
            "endpoint": endpoint, "app": self.app, "appArgs": app_args,
            "callerId": caller_id, "timeout": timeout, "channelId": channel_id,
            "formats": formats})

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        await self.request("DELETE", f"/channels/{channel_id}", params={"reason": reason})

    async def play(self, channel_id: str, media: str, playback_id: str) -> Any:
        return await self.request("POST", f"/channels/{channel_id}/play/{playback_id}",
                                  params={"media": media})

    async def channel_ids(self) -> set[str]:
        return {c["id"] for c in await self.request("GET", "/channels") or []}

    async def run_events(self, handler: EventHandler, stop: asyncio.Event,
                         max_backoff: float = 10.0,
                         on_connect: Callable[[], Awaitable[None]] | None = None,
                         on_disconnect: Callable[[], None] | None = None) -> None:
        """Keep the event WebSocket open until `stop`, reconnecting with backoff.
        Asterisk drops an app's events while it is disconnected: `on_connect`
        runs after every (re)connection so the caller can reconcile, and
        `on_disconnect` as soon as an open connection is lost."""
        token = base64.b64encode(f"{self._auth[0]}:{self._auth[1]}".encode()).decode()
        backoff = 0.2
        last_surprise = ""
        while not stop.is_set():
            try:
                async with websockets.connect(
                    self._events_url(),
                    additional_headers={"Authorization": f"Basic {token}"},
                    open_timeout=5,
                    ping_interval=10,
                    ping_timeout=10,
                ) as ws:
                    self.connected.set()
                    backoff = 0.2
                    log.info("ARI events connected (app %s)", self.app)
                    if on_connect is not None:
                        # In the background: events must flow while it runs.
                        task = asyncio.ensure_future(on_connect())
                        task.add_done_callback(_log_failure)
                    reader = asyncio.ensure_future(self._read(ws, handler))
                    stopper = asyncio.ensure_future(stop.wait())
                    await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    stopper.cancel()
                    if not reader.done():
                        reader.cancel()
                    elif reader.exception():
                        raise reader.exception()  # type: ignore[misc]
            except (OSError, websockets.WebSocketException, TimeoutError) as exc:
                log.warning("ARI events unavailable: %s", exc)
                self.last_error = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # a surprise: reconnect, never a deaf dispatcher
                seen = f"{type(exc).__name__}: {exc}"
                if seen != last_surprise:  # the traceback once, not at every retry
                    log.exception("ARI events failed; reconnecting")
                else:
                    log.error("ARI events failed again (%s); reconnecting", seen)
                last_surprise = seen
                self.last_error = seen
            was_connected = self.connected.is_set()
            self.connected.clear()
            if was_connected and on_disconnect is not None and not stop.is_set():
                on_disconnect()
            if stop.is_set():
                break
            self.reconnects += 1
            delay = backoff * (1 + random.random() / 2)
            backoff = min(max_backoff, backoff * 2)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass

    async def _read(self, ws: websockets.ClientConnection, handler: EventHandler) -> None:
        async for raw in ws:
            try:
                event = json.loads(raw)
            except ValueError:
                log.warning("ARI sent a frame that is not JSON")
                continue
            try:
                await handler(event)
            except Exception:
                log.exception("ARI event handler failed on %s", event.get("type"))
