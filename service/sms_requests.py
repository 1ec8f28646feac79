"""What a client may ask for in `POST /messages/sms`, checked field by field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import sms_text
from .http_errors import FieldError, validation_failed
from .phone_numbers import InvalidNumber, parse_e164
from .settings import Settings
from .tracked_links import TOKEN_LENGTH, link_for

RESOURCE = "Sms"
FIELDS = ("from", "to", "message", "repeat", "repeat_interval")


@dataclass(frozen=True)
class SmsRequest:
    from_number: str
    to_number: str
    text: str
    repeat_total: int
    repeat_interval: int | None
    tracked: bool  # `repeat` was given: the message carries a tracked link


def int_field(
    resource: str, body: dict[str, Any], name: str, low: int, high: int,
    errors: list[FieldError],
) -> int | None:
    """An optional integer field; appends to `errors` when it is wrong."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        errors.append(FieldError(resource, name, "invalid", f"{name} must be an integer"))
        return None
    if not low <= value <= high:
        errors.append(
            FieldError(resource, name, "out_of_range", f"{name} must be between {low} and {high}")
        )
        return None
    return value


def link_cost(settings: Settings, encoding: str) -> int:
    """Units the appended ' <link>' takes (the token length is fixed)."""
    sample = " " + link_for(settings.link_base_url, "x" * TOKEN_LENGTH)
    return sms_text.measure(sample, encoding).units


def parse_sms_request(body: Any, settings: Settings) -> SmsRequest:
    if not isinstance(body, dict):
        raise validation_failed(
            [FieldError(RESOURCE, "(body)", "invalid", "the body must be a JSON object")]
        )
    errors: list[FieldError] = []
    for name in body:
        if name not in FIELDS:
            errors.append(
                FieldError(
                    RESOURCE,
                    str(name),
                    "unknown_field",
                    f"unknown field {name!r}; allowed: {', '.join(FIELDS)}",
                )
            )

    numbers: dict[str, str] = {}
    for name in ("from", "to"):
        if body.get(name) is None:
            errors.append(FieldError(RESOURCE, name, "missing_field", f"{name} is required"))
            continue
        try:
            numbers[name] = parse_e164(body[name])
        except InvalidNumber as exc:
            errors.append(FieldError(RESOURCE, name, "invalid", f"{name} {exc}"))

    repeat = int_field(RESOURCE, body, "repeat", 1, settings.max_repeat, errors)
    interval = int_field(RESOURCE, body, "repeat_interval", 1, settings.max_repeat_interval,
                         errors)
    if interval is not None and repeat is None:
        errors.append(
            FieldError(RESOURCE, "repeat_interval", "invalid", "repeat_interval needs repeat")
        )

    text = body.get("message")
    if text is None:
        errors.append(FieldError(RESOURCE, "message", "missing_field", "message is required"))
    elif not isinstance(text, str):
        errors.append(FieldError(RESOURCE, "message", "invalid", "message must be a string"))
    elif not text.strip():
        errors.append(FieldError(RESOURCE, "message", "invalid", "message must not be empty"))
    elif "\x00" in text:
        errors.append(FieldError(RESOURCE, "message", "invalid", "message contains NUL"))
    else:
        measured = sms_text.measure(text)
        limit = sms_text.SINGLE_LIMIT[measured.encoding]
        reason = ""
        if repeat is not None:
            limit -= link_cost(settings, measured.encoding)
            reason = " with repeat (the tracked link and a space are appended)"
        if measured.units > limit:
            unit = "septets" if measured.encoding == sms_text.GSM7 else "UCS-2 characters"
            errors.append(
                FieldError(
                    RESOURCE,
                    "message",
                    "too_long",
                    f"message is {measured.units} {unit} in {measured.encoding}; "
                    f"at most {limit} {unit} allowed{reason}",
                )
            )

    if errors:
        raise validation_failed(errors)
    assert isinstance(text, str)
    if repeat is not None and interval is None:
        interval = settings.default_repeat_interval
    return SmsRequest(
        from_number=numbers["from"],
        to_number=numbers["to"],
        text=text,
        repeat_total=repeat or 1,
        repeat_interval=interval,
        tracked=repeat is not None,
    )
