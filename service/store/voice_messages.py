"""Voice messages as the API stores and shows them."""

from __future__ import annotations

from typing import Any

import asyncpg

from service.http.voice_requests import VoiceRequest
from service.settings import Settings
from service.store.queries import queries
from service.store.sms_messages import iso


def message_url(settings: Settings, message_id: int) -> str:
    return f"{settings.public_base_url.rstrip('/')}/messages/voice/{message_id}"


async def create(conn: asyncpg.Connection, account_id: int, req: VoiceRequest) -> int:
    return await queries.voice_messages.create(
        conn, account_id=account_id, from_number=req.from_number, to_number=req.to_number,
        file_name=req.file_name, retries=req.retries, retry_interval=req.retry_interval)


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


async def load(conn: asyncpg.Connection, account_id: int, message_id: int,
               settings: Settings) -> dict[str, Any] | None:
    row = await queries.voice_messages.get(conn, id=message_id, account_id=account_id)
    if row is None:
        return None
    attempts = await queries.voice_attempts.list_for_message(conn, message_id=message_id)
    return render(row, settings, list(attempts))
