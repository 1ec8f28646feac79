"""Phones that said STOP to an account (the rows come and go with STOP and
START, in service/store/inbound_messages.py)."""

from __future__ import annotations

from typing import Any

from service.domain.json_schema import E164, TIMESTAMP, Fields
from service.domain.timestamps import iso

FIELDS: Fields = {
    "phone": E164,
    "inbound_id": {"type": ["integer", "null"], "minimum": 1,
                   "description": "The STOP message (GET /messages/inbound/<id>)."},
    "created_at": TIMESTAMP,
}


def render(row: Any) -> dict[str, Any]:
    return {"phone": row["phone"], "inbound_id": row["inbound_id"],
            "created_at": iso(row["created_at"])}
