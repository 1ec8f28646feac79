"""FastAGI: the gateway's dialplan asks us what an inbound call should hear.

A call from the trunk runs `AGI(agi://127.0.0.1:<port>/replay)`; we play the
latest voice message sent to the caller's number (or a short "no messages"
prompt) and record that it was heard. FastAGI has no authentication, so the
server binds to loopback only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg
from panoramisk import fast_agi

from service.domain.phone_numbers import E164_SHAPE as _E164
from service.settings import Settings
from service.store.queries import queries

log = logging.getLogger(__name__)
NO_MESSAGE_PROMPT = ("vm-no", "vm-messages")  # Asterisk core prompts: "no messages"
HEADER_TIMEOUT = 10.0  # seconds for Asterisk to send a request's headers


def caller_number(headers: Mapping[str, str]) -> str | None:
    """The caller's number, when it is E.164 (a national form gets a '+')."""
    raw = headers.get("agi_callerid", "").strip()
    if raw and raw[0] != "+" and raw.isdigit():
        raw = "+" + raw
    return raw if _E164.fullmatch(raw) else None


class ReplayServer:
    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.pool = pool
        self.app = fast_agi.Application()  # only carried by panoramisk's Request
        self.routes: dict[str, Callable[[Any], Awaitable[None]]] = {"replay": self.replay}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection from Asterisk. Not panoramisk's `Application.handler`:
        it reads the request's headers in a loop that never ends, nor yields,
        on a connection closed before they do (`read()` at EOF returns at
        once), and one such connection froze the whole server for good. Here
        the headers are read with a bound and a timeout, then routed as
        panoramisk would."""
        peer = writer.get_extra_info("peername")
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\n\n"), HEADER_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                    OSError) as exc:
                log.warning("FastAGI connection from %s ended without a request (%s)", peer,
                            type(exc).__name__)
                return
            lines = head[:-2].decode(errors="replace").split("\n")
            headers = dict(line.split(": ", 1) for line in lines if ": " in line)
            script = headers.get("agi_network_script", "")
            route = self.routes.get(script)
            if route is None:
                log.error("FastAGI request from %s for unknown script %r", peer, script)
                return
            log.info("FastAGI request from %s for %r", peer, script)
            try:
                await route(fast_agi.Request(app=self.app, headers=headers, reader=reader,
                                             writer=writer))
            except Exception:
                log.exception("FastAGI request %r failed", script)
        finally:
            writer.close()

    async def replay(self, request: Any) -> None:
        number = caller_number(request.headers)
        found = None
        if number is not None:
            found = await queries.voice_messages.latest_sent_to(self.pool, number=number)
        await request.send_command("ANSWER")
        if found is None:
            log.info("inbound call from %s: no voice message to replay", number)
            await request.send_command(f'EXEC Verbose "1,Amivono: no voice message for {number}"')
            for prompt in NO_MESSAGE_PROMPT:
                await request.send_command(f'STREAM FILE {prompt} ""')
        else:
            path = f"{self.settings.sounds_dir_for_asterisk}/{found['media']}"
            await request.send_command(
                f'EXEC Verbose "1,Amivono: replaying voice message {found["id"]} '
                f'({found["file_name"]}) to {number}"')
            result = await request.send_command(f'STREAM FILE {path} ""')
            if "error" not in result and result.get("status_code") == 200:
                await queries.voice_messages.mark_heard(self.pool, id=found["id"])
            log.info("inbound call from %s heard voice message %s: %s", number, found["id"],
                     result)
        await request.send_command("HANGUP")


async def serve(settings: Settings, pool: asyncpg.Pool, stop: asyncio.Event) -> None:
    server = ReplayServer(settings, pool)
    listener = await asyncio.start_server(server.handle, settings.fastagi_bind,
                                          settings.fastagi_port)
    log.info("FastAGI listening on %s:%s", settings.fastagi_bind, settings.fastagi_port)
    async with listener:
        await stop.wait()
