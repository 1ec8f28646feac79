"""TCP proxies in front of the real Asterisk: a slow, hung or refusing
Asterisk as the network shows it."""

from __future__ import annotations

import asyncio


class DelayProxy:
    def __init__(self, target_port: int, delay: float | None) -> None:
        """delay: seconds each chunk of a plain HTTP request is held before it
        is forwarded; None holds them forever (the peer never answers).
        WebSocket upgrades pass untouched, so the ARI event connection stays
        up while its REST requests are slow or hang."""
        self.target_port = target_port
        self.delay = delay
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            first = await reader.read(65536)
            websocket = b"upgrade: websocket" in first.lower()
            delay = 0.0 if websocket else self.delay
            if not websocket:
                self.connections += 1
            if delay is None:
                await asyncio.Event().wait()
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            if delay:
                await asyncio.sleep(delay)
            up_writer.write(first)

            async def pump(
                src: asyncio.StreamReader, dst: asyncio.StreamWriter, delay: float
            ) -> None:
                while data := await src.read(65536):
                    if delay:
                        await asyncio.sleep(delay)
                    dst.write(data)
                    await dst.drain()
                dst.close()

            await asyncio.gather(pump(reader, up_writer, self.delay), pump(up_reader, writer, 0.0))
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)


class RequestFilterProxy:
    """Passes everything (the event WebSocket too) to the real Asterisk, except
    the requests `intercept` takes. aiohttp sends one request at a time on a
    connection, each starting a chunk, so a chunk's first line is its request
    line."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def intercept(self, request_line: bytes, client: asyncio.StreamWriter) -> bool:
        """True when this request was dealt with here and must not go on."""
        raise NotImplementedError

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server:
            self._server.close()
        await self.close_connections()

    async def close_connections(self) -> None:
        """End every connection through the proxy (new ones are still taken)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            upstream = up_writer

            async def requests() -> None:
                while data := await reader.read(65536):
                    if await self.intercept(data.split(b"\r\n", 1)[0], writer):
                        continue
                    upstream.write(data)
                    await upstream.drain()
                upstream.close()

            async def responses() -> None:
                while data := await up_reader.read(65536):
                    writer.write(data)
                    await writer.drain()
                writer.close()

            await asyncio.gather(requests(), responses())
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            # Both ends: a cut connection is gone for Asterisk too.
            writer.close()
            if up_writer is not None:
                up_writer.close()
            self._tasks.discard(task)
