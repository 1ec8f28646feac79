"""FastAGI: the gateway's dialplan asks us what an inbound call should hear.

A call from the trunk runs `AGI(agi://127.0.0.1:<port>/replay)`; we play the
latest voice message sent to the caller's number (or a short "no messages"
prompt) and record that it was heard. FastAGI has no authentication, so the
server binds to loopback only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import asyncpg
from panoramisk import fast_agi

from service.domain.phone_numbers import E164_SHAPE as _E164
from service.settings import Settings
from service.store.queries import queries

log = logging.getLogger(__name__)
NO_MESSAGE_PROMPT = ("vm-no", "vm-messages")  # Asterisk core prompts: "no messages"


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
        # panoramisk wraps sync handlers with asyncio.coroutine, gone since
        # Python 3.11: register only `async def` handlers.
        self.app = fast_agi.Application()
        self.app.add_route("replay", self.replay)

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
            path = f"{self.settings.sounds_dir_for_asterisk}/{found['account_id']}/{found['stem']}"
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
    listener = await asyncio.start_server(server.app.handler, settings.fastagi_bind,
                                          settings.fastagi_port)
    log.info("FastAGI listening on %s:%s", settings.fastagi_bind, settings.fastagi_port)
    async with listener:
        await stop.wait()
