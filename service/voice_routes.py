"""HTTP handlers of the voice-message resource."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from . import idempotency, voice_messages
from .api_keys import Account
from .http_errors import ApiError, FieldError, validation_failed
from .http_json import JSON, message_id_param, page_links, page_params, read_json
from .queries import queries
from .queue_signal import notify_cancel
from .settings import Settings
from .voice_requests import RESOURCE, parse_voice_request


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


async def get_voice(request: Request, account: Account) -> Response:
    state = request.app.state
    async with state.pool.acquire() as conn:
        out = await voice_messages.load(conn, account.id, message_id_param(request),
                                        state.settings)
    if out is None:
        raise ApiError(404, "Not Found")
    return JSON(out)


async def list_voice(request: Request, account: Account) -> Response:
    state = request.app.state
    settings: Settings = state.settings
    per_page, before = page_params(request, RESOURCE)
    rows = await queries.voice_messages.list_page(
        state.pool, account_id=account.id, before_id=before, limit=per_page)
    items = [voice_messages.render(r, settings) for r in rows]
    base = f"{settings.public_base_url.rstrip('/')}/messages/voice"
    return JSON(items, headers={"Link": page_links(base, per_page, rows)})


async def cancel_voice(request: Request, account: Account) -> Response:
    state = request.app.state
    message_id = message_id_param(request)
    async with state.pool.acquire() as conn:
        row = await queries.voice_messages.cancel(conn, id=message_id, account_id=account.id)
        out = await voice_messages.load(conn, account.id, message_id, state.settings)
    if out is None:
        raise ApiError(404, "Not Found")
    if row is not None and row["lease_attempt_id"] is not None:
        await notify_cancel(state.pool, row["lease_attempt_id"])  # hang up the call
    if out["status"] != "canceled":
        raise ApiError(409, f"Message {message_id} is {out['status']}: nothing left to cancel")
    return JSON(out)
