"""What a client may ask of a webhook endpoint (POST and PATCH /webhooks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.domain.egress import RefusedUrl, split_url
from service.domain.refusals import FieldError, validation_failed
from service.domain.request_fields import bool_field, require_object, unknown_fields
from service.domain.statuses import FieldCode, WebhookEvent

RESOURCE = "Webhook"
MAX_URL = 2048
MAX_DESCRIPTION = 500
# What an endpoint can subscribe to (webhook.test goes to it whatever it chose).
EVENTS = tuple(e.value for e in WebhookEvent if e != WebhookEvent.WEBHOOK_TEST)


@dataclass(frozen=True)
class WebhookRequest:
    url: str | None
    events: list[str] | None      # [] or None on POST: every event
    description: str | None
    enabled: bool | None


def parse_webhook_request(body: Any, *, patch: bool = False) -> WebhookRequest:
    body = require_object(RESOURCE, body)
    errors: list[FieldError] = []
    fields = ("url", "events", "description") + (("enabled",) if patch else ())
    unknown_fields(RESOURCE, body, fields, errors)
    url = body.get("url")
    if url is None:
        if not patch:
            errors.append(FieldError(RESOURCE, "url", FieldCode.MISSING_FIELD, "url is required"))
    elif not isinstance(url, str) or len(url) > MAX_URL:
        errors.append(FieldError(RESOURCE, "url", FieldCode.INVALID,
                                 f"url must be a string of at most {MAX_URL} characters"))
        url = None
    else:
        try:
            split_url(url)
        except RefusedUrl as exc:
            errors.append(FieldError(RESOURCE, "url", FieldCode.INVALID, str(exc)))
    events = body.get("events")
    if events is not None:
        if (not isinstance(events, list) or not all(isinstance(e, str) for e in events)
                or len(events) > len(EVENTS)):
            errors.append(FieldError(RESOURCE, "events", FieldCode.INVALID,
                                     "events must be a list of event types"))
            events = None
        else:
            unknown = [e for e in events if e not in EVENTS]
            if unknown:
                errors.append(FieldError(RESOURCE, "events", FieldCode.INVALID,
                                         f"unknown events {unknown}; known: {', '.join(EVENTS)}"))
            events = sorted(set(events))
    description = body.get("description")
    if description is not None and (not isinstance(description, str)
                                    or len(description) > MAX_DESCRIPTION):
        errors.append(FieldError(RESOURCE, "description", FieldCode.INVALID,
                                 f"description must be at most {MAX_DESCRIPTION} characters"))
    enabled = bool_field(RESOURCE, body, "enabled", True, errors) if "enabled" in body else None
    if errors:
        raise validation_failed(errors)
    return WebhookRequest(url, events, description, enabled)
