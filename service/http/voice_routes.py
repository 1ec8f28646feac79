"""HTTP handlers of the voice-message resource."""

from __future__ import annotations

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from service.http import idempotency
from service.http.errors import FieldError, validation_failed
from service.http.json_io import read_json
from service.http.message_routes import MessageKind, cancel_handler, get_handler, list_handler
from service.http.voice_requests import RESOURCE, parse_voice_request
from service.settings import Settings
from service.store import voice_messages
from service.store.api_keys import Account
from service.store.queries import queries
from service.store.queue_signal import notify_cancel


async def create_voice(request: Request, account: Account) -> Response:
    state = request.app.state
    settings: Settings = state.settings
    body = await read_json(request)
    voice = parse_voice_request(body, settings)

    async def create(conn) -> tuple[dict, str]:  # noqa: ANN001
        async with conn.transaction():  # a savepoint when create_once has one open
            return await create_locked(conn)

    async def create_locked(conn) -> tuple[dict, str]:  # noqa: ANN001
        # FOR SHARE: a concurrent DELETE of the file waits for us, then sees
        # this message and refuses.
        if await queries.sound_files.lock(conn, account_id=account.id,
                                          name=voice.file_name) is None:
            raise validation_failed([FieldError(
                RESOURCE, "file", "invalid",
                f"no uploaded file named {voice.file_name!r}: PUT /files/{voice.file_name} "
                "first")])
        message_id = await voice_messages.create(conn, account.id, voice)
        out = await voice_messages.load(conn, account.id, message_id, settings)
        assert out is not None
        return out, voice_messages.message_url(settings, message_id)

    response = await idempotency.create_once(
        request, account, RESOURCE, "/messages/voice", body, create)
    state.notifier.poke()
    return response


async def hang_up_call_in_flight(pool: asyncpg.Pool, row: asyncpg.Record | None) -> None:
    if row is not None and row["lease_attempt_id"] is not None:
        await notify_cancel(pool, row["lease_attempt_id"])


VOICE = MessageKind("/messages/voice", RESOURCE, queries.voice_messages, voice_messages.load,
                    voice_messages.render)
get_voice = get_handler(VOICE)
list_voice = list_handler(VOICE)
cancel_voice = cancel_handler(VOICE, after=hang_up_call_in_flight)
