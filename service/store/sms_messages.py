"""SMS messages as the API stores and shows them."""

from __future__ import annotations

from typing import Any

import asyncpg

from service.domain import sms_text
from service.domain.json_schema import (
    E164,
    ID,
    MAYBE_TIMESTAMP,
    TIMESTAMP,
    URL,
    Fields,
    enum,
    nullable,
)
from service.domain.sms_requests import SmsRequest
from service.domain.statuses import SMS_ACTIVE, SmsAttemptOutcome, SmsStatus
from service.domain.timestamps import iso
from service.domain.tracked_links import link_for, new_token
from service.settings import Settings
from service.store.database import Executor
from service.store.queries import queries

PATH = "/messages/sms"


def message_url(settings: Settings, message_id: int) -> str:
    return settings.public_url(f"{PATH}/{message_id}")


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


# What render writes, in its order; the OpenAPI schema is built from these, and
# tests/unit/test_rendered_fields.py fails when render writes anything else.
FIELDS: Fields = {
    "id": ID,
    "url": URL,
    "from": E164,
    "to": E164,
    "message": {"type": "string",
                "description": "The text as sent, with the tracked link when `repeat`"
                               " was given."},
    "last_sent_at": MAYBE_TIMESTAMP,
    "repeat": {"type": "integer", "minimum": 0,
               "description": "Sends still to come after the first (10 asked shows 9);"
                              " 0 once nothing is left to send."},
    "repeat_interval": {"type": ["integer", "null"], "minimum": 1,
                        "description": "Minutes; null without `repeat`."},
    "created_at": TIMESTAMP,
    "updated_at": TIMESTAMP,
    "status": enum(SmsStatus),
    "sent_count": {"type": "integer", "minimum": 0},
    "next_send_at": MAYBE_TIMESTAMP,
    "clicked_at": MAYBE_TIMESTAMP,
    "canceled_at": MAYBE_TIMESTAMP,
    "encoding": {"type": "string", "enum": [sms_text.GSM7, sms_text.UCS2]},
    "segments": {"type": "integer", "minimum": 1},
}
# Each of `attempts` (present when render is given them).
ATTEMPT_FIELDS: Fields = {
    "id": ID,
    "send_number": {"type": "integer", "minimum": 1,
                    "description": "Which of the `repeat` sends this was."},
    "dispatcher": {"type": "string"},
    "transport": {"type": "string", "examples": ["ari-pjsip", "dongle-ami"]},
    "started_at": TIMESTAMP,
    "finished_at": MAYBE_TIMESTAMP,
    "outcome": nullable(enum(
        SmsAttemptOutcome,
        description="sent: handed to the trunk; unknown: the dispatcher lost its lease"
                    " mid-send, so it may have been sent; null while in progress.")),
    "detail": {"type": ["string", "null"]},
}


def render(
    row: asyncpg.Record, settings: Settings, attempts: list[asyncpg.Record] | None = None
) -> dict[str, Any]:
    """The JSON a client sees: the spec's fields first, then ours."""
    to_come = 0
    if row["status"] in SMS_ACTIVE:
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


async def cancel(conn: Executor, account_id: int, message_id: int) -> None:
    """Cancel the sends still to come (nothing when none are)."""
    await queries.sms_messages.cancel(conn, id=message_id, account_id=account_id)
