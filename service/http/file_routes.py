"""HTTP handlers of the sound files: each account has its own namespace."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from service.domain import file_names
from service.domain.json_schema import TIMESTAMP, URL, Fields, anchored
from service.domain.refusals import FieldError, Reason, Refused, validation_failed
from service.domain.timestamps import iso
from service.http.json_io import JSON, read_body
from service.settings import Settings
from service.store import sound_files
from service.store.api_keys import Account
from service.store.queries import queries

RESOURCE = "File"


def file_url(settings: Settings, name: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}/files/{name}"


def fields(settings: Settings) -> Fields:
    """What render writes, in its order (the limits are the running settings'); the
    OpenAPI schema is built from it, and tests/unit/test_rendered_fields.py fails
    when render writes anything else."""
    return {
        "name": {"type": "string", "pattern": anchored(file_names.NAME_SHAPE)},
        "url": URL,
        "duration": {"type": "number", "exclusiveMinimum": 0,
                     "maximum": settings.max_sound_seconds,
                     "description": "Seconds, to the millisecond."},
        "size": {"type": "integer", "minimum": 1, "maximum": settings.max_upload_bytes,
                 "description": "Bytes of the upload as received."},
        "source_format": {"type": "string", "examples": ["WAV", "MP3", "OGG", "FLAC"],
                          "description": "The uploaded container, as libsndfile names it."},
        "source_rate": {"type": "integer", "minimum": 1,
                        "description": "Sample rate of the upload, Hz."},
        "formats": {"type": "array",
                    "items": {"type": "string", "enum": list(sound_files.FORMATS)},
                    "description": "What Asterisk plays: raw u-law and A-law at 8 kHz,"
                                   " 16 kHz WAV."},
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
    }


def render(row: asyncpg.Record, settings: Settings) -> dict[str, Any]:
    return {
        "name": row["name"],
        "url": file_url(settings, row["name"]),
        "duration": row["duration_ms"] / 1000,
        "size": row["size_bytes"],
        "source_format": row["source_format"],
        "source_rate": row["source_rate"],
        "formats": list(row["formats"]),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def file_name_param(request: Request) -> str:
    name: str = request.path_params["name"]
    if not file_names.valid_name(name):
        raise validation_failed([FieldError(
            RESOURCE, "name", "invalid", "file names are 1 to 64 of A-Z a-z 0-9 . _ -")])
    return name


RETRY_AFTER_BUSY = 5  # seconds


async def put_file(request: Request, account: Account) -> Response:
    state = request.app.state
    settings: Settings = state.settings
    name = file_name_param(request)
    # At most max_concurrent_uploads bodies held and decoded at once in this
    # process; one more is refused at once (503, Retry-After), not queued.
    slots: asyncio.Semaphore = state.upload_slots
    if slots.locked():
        raise Refused(Reason.BUSY, "Too many uploads in progress; retry later",
                      headers={"Retry-After": str(RETRY_AFTER_BUSY)})
    await slots.acquire()
    try:
        data = await read_body(request, settings.max_upload_bytes)
        if not data:
            raise Refused(Reason.INVALID,
                          "The request body is empty: send the audio file as the body")
        folder = sound_files.account_folder(settings.sounds_dir, account.id)
        # Refused (415, 422) when it is not audio we can use.
        decoding = asyncio.ensure_future(
            sound_files.convert_async(data, folder, sound_files.Limits.from_settings(settings)))
    except BaseException:
        slots.release()
        raise
    # The slot is freed when the decoding thread ends, even if this request is
    # cancelled first (a thread cannot be stopped).
    decoding.add_done_callback(lambda _: slots.release())
    converted = await asyncio.shield(decoding)
    try:
        row = await queries.sound_files.upsert(
            state.pool, account_id=account.id, name=name, stem=converted.stem,
            duration_ms=converted.duration_ms, size_bytes=len(data),
            source_format=converted.source_format, source_rate=converted.source_rate,
            formats=converted.formats)
    except BaseException:
        sound_files.remove(folder, converted.stem)
        raise
    if row["old_stem"]:
        # Linux keeps an open file readable: a call playing the old audio finishes it.
        sound_files.remove(folder, row["old_stem"])
    status = 200 if row["old_stem"] else 201
    return JSON(render(row, settings), status_code=status,
                headers={"Location": file_url(settings, name)})


async def get_file(request: Request, account: Account) -> Response:
    state = request.app.state
    row = await queries.sound_files.get(state.pool, account_id=account.id,
                                        name=file_name_param(request))
    if row is None:
        raise Refused(Reason.NOT_FOUND, "Not Found")
    return JSON(render(row, state.settings))


async def list_files(request: Request, account: Account) -> Response:
    state = request.app.state
    rows = await queries.sound_files.list_for_account(state.pool, account_id=account.id)
    return JSON([render(r, state.settings) for r in rows])


async def delete_file(request: Request, account: Account) -> Response:
    state = request.app.state
    settings: Settings = state.settings
    name = file_name_param(request)
    async with state.pool.acquire() as conn, conn.transaction():
        # Waits for voice messages being created with this file, so the check
        # below (a new statement, a new snapshot) sees them.
        row = await queries.sound_files.lock_for_delete(conn, account_id=account.id, name=name)
        if row is None:
            raise Refused(Reason.NOT_FOUND, "Not Found")
        if await queries.voice_messages.needs_file(conn, account_id=account.id, file_name=name):
            raise Refused(Reason.CONFLICT,
                f"File {name!r} is still needed by a queued voice message")
        await queries.sound_files.delete(conn, id=row["id"])
    sound_files.remove(sound_files.account_folder(settings.sounds_dir, account.id), row["stem"])
    return Response(status_code=204)
