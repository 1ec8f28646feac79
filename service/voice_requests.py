"""What a client may ask for in `POST /messages/voice`, checked field by field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .http_errors import FieldError, validation_failed
from .phone_numbers import InvalidNumber, parse_e164
from .settings import Settings
from .sms_requests import int_field
from .sound_files import valid_name

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
    if not isinstance(body, dict):
        raise validation_failed([FieldError(
            RESOURCE, "(body)", "invalid", "the body must be a JSON object")])
    errors: list[FieldError] = []
    for name in body:
        if name not in FIELDS:
            errors.append(FieldError(
                RESOURCE, str(name), "unknown_field",
                f"unknown field {name!r}; allowed: {', '.join(FIELDS)}"))
    numbers: dict[str, str] = {}
    for name in ("from", "to"):
        if body.get(name) is None:
            errors.append(FieldError(RESOURCE, name, "missing_field", f"{name} is required"))
            continue
        try:
            numbers[name] = parse_e164(body[name])
        except InvalidNumber as exc:
            errors.append(FieldError(RESOURCE, name, "invalid", f"{name} {exc}"))
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
