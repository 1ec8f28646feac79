"""What a client may ask for in `POST /messages/sms`, checked field by field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.domain import sms_text
from service.domain.refusals import FieldError, validation_failed
from service.domain.request_fields import bool_field, int_field, require_object, unknown_fields
from service.domain.request_fields import numbers as number_fields
from service.domain.statuses import FieldCode
from service.domain.tracked_links import TOKEN_LENGTH, link_for
from service.domain.voice_requests import Audio, audio_fields, language_field
from service.settings import Settings

RESOURCE = "Sms"
FIELDS = ("from", "to", "message", "repeat", "repeat_interval", "stop_on_reply", "escalate")
ESCALATE_FIELDS = ("after", "file", "text", "language")


@dataclass(frozen=True)
class Escalation:
    """`escalate`: after `after` sends with no click and no reply, a voice
    message with acknowledge: true to the same number plays `audio`."""

    after: int
    audio: Audio
    language: str


@dataclass(frozen=True)
class SmsRequest:
    from_number: str
    to_number: str
    text: str
    repeat_total: int
    repeat_interval: int | None
    tracked: bool  # `repeat` was given: the message carries a tracked link
    stop_on_reply: bool = True  # a reply from the phone ends the repeats
    escalate: Escalation | None = None


def link_cost(settings: Settings, encoding: str) -> int:
    """Units the appended ' <link>' takes (the token length is fixed)."""
    sample = " " + link_for(settings.link_base_url, "x" * TOKEN_LENGTH)
    return sms_text.measure(sample, encoding).units


def parse_sms_request(body: Any, settings: Settings) -> SmsRequest:
    body = require_object(RESOURCE, body)
    errors: list[FieldError] = []
    unknown_fields(RESOURCE, body, FIELDS, errors)
    numbers = number_fields(RESOURCE, body, errors)

    repeat = int_field(RESOURCE, body, "repeat", 1, settings.max_repeat, errors)
    interval = int_field(RESOURCE, body, "repeat_interval", 1, settings.max_repeat_interval,
                         errors)
    stop_on_reply = bool_field(RESOURCE, body, "stop_on_reply", True, errors)
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
    elif not sms_text.has_visible(text):
        errors.append(FieldError(
            RESOURCE, "message", "invalid",
            "message has no visible character (only spaces, line breaks, zero-width "
            "or other invisible characters)"))
    else:
        text = sms_text.normalise(text)
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

    escalate = _escalation(body, repeat or 1, errors)

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
        stop_on_reply=stop_on_reply,
        escalate=escalate,
    )


def _escalation(body: dict[str, Any], repeat_total: int,
                errors: list[FieldError]) -> Escalation | None:
    value = body.get("escalate")
    if value is None:
        return None
    if not isinstance(value, dict):
        errors.append(FieldError(RESOURCE, "escalate", FieldCode.INVALID,
                                 'escalate must be {"after": N, "file" or "text": ...}'))
        return None
    prefix = "escalate."
    before = len(errors)
    unknown_fields(RESOURCE, value, ESCALATE_FIELDS, errors, prefix)
    after = value.get("after")
    if after is None:
        errors.append(FieldError(RESOURCE, f"{prefix}after", FieldCode.MISSING_FIELD,
                                 "escalate.after is required"))
    else:
        # The escalation can only come after a send that is made.
        after = int_field(RESOURCE, value, "after", 1, repeat_total, errors)
        if errors and errors[-1].field == "after":
            errors[-1] = FieldError(RESOURCE, f"{prefix}after", errors[-1].code,
                                    "escalate." + errors[-1].message
                                    + " (the sends asked with repeat)")
    audio = audio_fields(RESOURCE, value, errors, prefix)
    language = language_field(RESOURCE, value, errors, prefix)
    if len(errors) != before or after is None:
        return None
    return Escalation(after, audio, language)
