"""Voice messages as the API stores and shows them."""

from __future__ import annotations

from typing import Any

import asyncpg

from service.domain.file_names import NAME_SHAPE
from service.domain.json_schema import (
    E164,
    ID,
    MAYBE_TIMESTAMP,
    TIMESTAMP,
    URL,
    Fields,
    anchored,
    enum,
    nullable,
)
from service.domain.refusals import FieldError, validation_failed
from service.domain.request_fields import not_owned
from service.domain.statuses import FieldCode, VoiceAttemptOutcome, VoiceOutcome, VoiceStatus
from service.domain.timestamps import iso
from service.domain.voice_requests import RESOURCE, VoiceRequest
from service.settings import Settings
from service.store.database import Executor
from service.store.queries import queries
from service.store.queue_signal import notify_cancel

PATH = "/messages/voice"


def message_url(settings: Settings, message_id: int) -> str:
    return settings.public_url(f"{PATH}/{message_id}")


async def create(conn: asyncpg.Connection, account_id: int, req: VoiceRequest,
                 settings: Settings) -> dict[str, Any]:
    """Store the message; return it as the API shows it (no attempts yet).
    Refused when the account has no file of that name."""
    checks = {"account_id": account_id, "from_number": req.from_number,
              "any_sender": settings.sender_policy == "any"}
    row = await queries.voice_messages.create(
        conn, **checks, to_number=req.to_number, file_name=req.file_name,
        retries=req.retries, retry_interval=req.retry_interval)
    if row is None:
        if not await queries.phone_numbers.owns(conn, **checks):
            raise validation_failed([not_owned(RESOURCE, req.from_number)])
        raise validation_failed([FieldError(
            RESOURCE, "file", FieldCode.INVALID,
            f"no uploaded file named {req.file_name!r}: PUT /files/{req.file_name} first")])
    return render(row, settings, [])


# What render writes, in its order; the OpenAPI schema is built from these, and
# tests/unit/test_rendered_fields.py fails when render writes anything else.
FIELDS: Fields = {
    "id": ID,
    "url": URL,
    "from": E164,
    "to": E164,
    "file": {"type": "string", "pattern": anchored(NAME_SHAPE)},
    "sent_at": {**MAYBE_TIMESTAMP, "description": "When the answered call started"
                                                  " playing the file."},
    "created_at": TIMESTAMP,
    "updated_at": TIMESTAMP,
    "status": enum(VoiceStatus, description="queued, calling, scheduled (for a retry),"
                                            " then the outcome."),
    "answered_at": MAYBE_TIMESTAMP,
    "ended_at": MAYBE_TIMESTAMP,
    "duration": {"type": ["number", "null"], "minimum": 0,
                 "description": "Seconds from answer to hang-up, to 0.1 s."},
    "outcome": nullable(enum(VoiceOutcome,
                             description="null until the message is finished.")),
    "cause": {"type": ["integer", "null"], "description": "Q.850 cause code."},
    "cause_text": {"type": ["string", "null"]},
    "retries": {"type": "integer", "minimum": 0},
    "retry_interval": {"type": "integer", "minimum": 1, "description": "Minutes."},
    "attempts_made": {"type": "integer", "minimum": 0},
    "next_attempt_at": MAYBE_TIMESTAMP,
    "heard_at": {**MAYBE_TIMESTAMP, "description": "When the callee heard it again by"
                                                   " calling back."},
    "canceled_at": MAYBE_TIMESTAMP,
}
# Each of `attempts` (present when render is given them).
ATTEMPT_FIELDS: Fields = {
    "id": ID,
    "dispatcher": {"type": "string"},
    "gateway": {"type": ["string", "null"], "examples": ["node1", "default"],
                "description": "The gateway node (`amivono gateways list`) that carried the"
                               " call."},
    "started_at": TIMESTAMP,
    "answered_at": MAYBE_TIMESTAMP,
    "playback_started_at": MAYBE_TIMESTAMP,
    "finished_at": MAYBE_TIMESTAMP,
    "outcome": nullable(enum(VoiceAttemptOutcome,
                             description="null while the call is in progress.")),
    "cause": {"type": ["integer", "null"], "description": "Q.850 cause code."},
    "cause_text": {"type": ["string", "null"]},
    "detail": {"type": ["string", "null"]},
}


def render(row: asyncpg.Record, settings: Settings,
           attempts: list[asyncpg.Record] | None = None) -> dict[str, Any]:
    """The spec's fields first (`file` where the spec's copy says `message`), then ours."""
    out: dict[str, Any] = {
        "id": row["id"],
        "url": message_url(settings, row["id"]),
        "from": row["from_number"],
        "to": row["to_number"],
        "file": row["file_name"],
        "sent_at": iso(row["sent_at"]),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "status": row["status"],
        "answered_at": iso(row["answered_at"]),
        "ended_at": iso(row["ended_at"]),
        "duration": None if row["duration"] is None else round(row["duration"], 1),
        "outcome": row["outcome"] if row["finished_at"] is not None else None,
        "cause": row["cause_code"],
        "cause_text": row["cause_text"],
        "retries": row["retries"],
        "retry_interval": row["retry_interval"],
        "attempts_made": row["attempts_made"],
        "next_attempt_at": iso(row["next_attempt_at"]),
        "heard_at": iso(row["heard_at"]),
        "canceled_at": iso(row["canceled_at"]),
    }
    if attempts is not None:
        out["attempts"] = [
            {
                "id": a["id"],
                "dispatcher": a["dispatcher"],
                "gateway": a["gateway"],
                "started_at": iso(a["started_at"]),
                "answered_at": iso(a["answered_at"]),
                "playback_started_at": iso(a["playback_started_at"]),
                "finished_at": iso(a["finished_at"]),
                "outcome": a["outcome"],
                "cause": a["cause_code"],
                "cause_text": a["cause_text"],
                "detail": a["detail"],
            }
            for a in attempts
        ]
    return out


async def cancel(conn: Executor, account_id: int, message_id: int) -> None:
    """Cancel the calls still to come; a call in flight is hung up by its
    dispatcher, woken by NOTIFY."""
    row = await queries.voice_messages.cancel(conn, id=message_id, account_id=account_id)
    if row is not None and row["lease_attempt_id"] is not None:
        await notify_cancel(conn, row["lease_attempt_id"])
