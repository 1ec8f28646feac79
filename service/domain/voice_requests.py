"""What a client may ask for in `POST /messages/voice`, checked field by field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.domain.file_names import valid_name
from service.domain.refusals import FieldError, validation_failed
from service.domain.request_fields import int_field, require_object, unknown_fields
from service.domain.request_fields import numbers as number_fields
from service.settings import Settings

RESOURCE = "Voice"
FIELDS = ("from", "to", "file", "retries", "retry_interval")
DEFAULT_RETRY_INTERVAL = 5  # minutes


@dataclass(frozen=True)
class VoiceRequest:
    from_number: str
    to_number: str
    file_name: str
    retries: int
    retry_interval: int


def parse_voice_request(body: Any, settings: Settings) -> VoiceRequest:
    body = require_object(RESOURCE, body)
    errors: list[FieldError] = []
    unknown_fields(RESOURCE, body, FIELDS, errors)
    numbers = number_fields(RESOURCE, body, errors)
    file_name = body.get("file")
    if file_name is None:
        errors.append(FieldError(RESOURCE, "file", "missing_field", "file is required"))
    elif not isinstance(file_name, str) or not valid_name(file_name):
        errors.append(FieldError(
            RESOURCE, "file", "invalid",
            "file must be the name of an uploaded file: 1 to 64 of A-Z a-z 0-9 . _ -"))
    retries = int_field(RESOURCE, body, "retries", 0, settings.max_voice_retries, errors)
    interval = int_field(RESOURCE, body, "retry_interval", 1, settings.max_repeat_interval,
                         errors)
    if errors:
        raise validation_failed(errors)
    assert isinstance(file_name, str)
    return VoiceRequest(numbers["from"], numbers["to"], file_name, retries or 0,
                        interval or DEFAULT_RETRY_INTERVAL)
