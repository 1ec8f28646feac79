"""SMS messages as the API stores and shows them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from service.domain import sms_text
from service.domain.tracked_links import link_for, new_token
from service.http.sms_requests import SmsRequest
from service.settings import Settings
from service.store.queries import queries


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC, to the second, as the spec writes it."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def message_url(settings: Settings, message_id: int) -> str:
    return f"{settings.public_base_url.rstrip('/')}/messages/sms/{message_id}"


async def create(
    conn: asyncpg.Connection, account_id: int, req: SmsRequest, settings: Settings
) -> dict[str, Any]:
    """Store the message; return it as the API shows it (no attempts yet)."""
    token = new_token() if req.tracked else None
    body = f"{req.text} {link_for(settings.link_base_url, token)}" if token else req.text
    measured = sms_text.measure(body)
    row = await queries.sms_messages.create(
        conn,
        account_id=account_id,
        from_number=req.from_number,
        to_number=req.to_number,
        text=req.text,
        body=body,
        encoding=measured.encoding,
        segments=measured.segments,
        repeat_total=req.repeat_total,
        repeat_interval=req.repeat_interval,
        link_token=token,
    )
    return render(row, settings, [])


def render(
    row: asyncpg.Record, settings: Settings, attempts: list[asyncpg.Record] | None = None
) -> dict[str, Any]:
    """The JSON a client sees: the spec's fields first, then ours."""
    to_come = 0
    if row["status"] in ("queued", "sending", "scheduled"):
        # Sends still to come after the first: 10 asked is 9, as in the spec.
        to_come = row["repeat_total"] - max(row["sent_count"], 1)
    out: dict[str, Any] = {
        "id": row["id"],
        "url": message_url(settings, row["id"]),
        "from": row["from_number"],
        "to": row["to_number"],
        "message": row["body"],
        "last_sent_at": iso(row["last_sent_at"]),
        "repeat": to_come,
        "repeat_interval": row["repeat_interval"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "status": row["status"],
        "sent_count": row["sent_count"],
        "next_send_at": iso(row["next_send_at"]),
        "clicked_at": iso(row["clicked_at"]),
        "canceled_at": iso(row["canceled_at"]),
        "encoding": row["encoding"],
        "segments": row["segments"],
    }
    if attempts is not None:
        out["attempts"] = [
            {
                "id": a["id"],
                "send_number": a["send_number"],
                "dispatcher": a["dispatcher"],
                "transport": a["transport"],
                "started_at": iso(a["started_at"]),
                "finished_at": iso(a["finished_at"]),
                "outcome": a["outcome"],
                "detail": a["detail"],
            }
            for a in attempts
        ]
    return out


async def load(
    conn: asyncpg.Connection, account_id: int, message_id: int, settings: Settings
) -> dict[str, Any] | None:
    row = await queries.sms_messages.get(conn, id=message_id, account_id=account_id)
    if row is None:
        return None
    attempts = await queries.sms_attempts.list_for_message(conn, message_id=message_id)
    return render(row, settings, list(attempts))
