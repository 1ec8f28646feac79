"""Webhook endpoints and their deliveries as the API shows them."""

from __future__ import annotations

from typing import Any

from service.domain.json_schema import ID, MAYBE_TIMESTAMP, TIMESTAMP, URL, Fields, enum
from service.domain.statuses import WebhookDeliveryStatus, WebhookEvent
from service.domain.timestamps import iso
from service.settings import Settings

PATH = "/webhooks"

FIELDS: Fields = {
    "id": ID,
    "url": URL,
    "description": {"type": "string"},
    "events": {"type": "array", "items": enum(WebhookEvent),
               "description": "The events it takes; empty: every event."},
    "enabled": {"type": "boolean"},
    "disabled_reason": {"type": ["string", "null"],
                        "description": "Why it is disabled (the client, or every delivery "
                                       "failing for too long)."},
    "failing_since": MAYBE_TIMESTAMP,
    "created_at": TIMESTAMP,
    "updated_at": TIMESTAMP,
}


def render(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "url": row["url"],
        "description": row["description"],
        "events": list(row["events"]),
        "enabled": row["enabled"],
        "disabled_reason": row["disabled_reason"],
        "failing_since": iso(row["failing_since"]),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


DELIVERY_FIELDS: Fields = {
    "id": ID,
    "webhook_id": {"type": "string", "description": "The webhook-id header: the same on "
                                                    "every retry; deduplicate by it."},
    "event_type": enum(WebhookEvent),
    "event_at": TIMESTAMP,
    "status": enum(WebhookDeliveryStatus),
    "attempts": {"type": "integer", "minimum": 0},
    "last_attempt_at": MAYBE_TIMESTAMP,
    "last_status_code": {"type": ["integer", "null"]},
    "last_error": {"type": ["string", "null"]},
    "last_latency_ms": {"type": ["integer", "null"], "minimum": 0},
    "next_attempt_at": {**MAYBE_TIMESTAMP,
                        "description": "When it is tried next; null once done."},
}


def render_delivery(row: Any) -> dict[str, Any]:
    pending = row["status"] == WebhookDeliveryStatus.PENDING
    return {
        "id": row["id"],
        "webhook_id": row["webhook_id"],
        "event_type": row["event_type"],
        "event_at": iso(row["event_at"]),
        "status": row["status"],
        "attempts": row["attempts"],
        "last_attempt_at": iso(row["last_attempt_at"]),
        "last_status_code": row["last_status_code"],
        "last_error": row["last_error"],
        "last_latency_ms": row["last_latency_ms"],
        "next_attempt_at": iso(row["next_attempt_at"]) if pending else None,
    }


def endpoint_url(settings: Settings, endpoint_id: int) -> str:
    return settings.public_url(f"{PATH}/{endpoint_id}")
