"""What a client may ask for in `POST /messages/voice`, checked field by field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.domain.file_names import valid_name
from service.domain.refusals import FieldError, validation_failed
from service.domain.request_fields import bool_field, int_field, require_object, unknown_fields
from service.domain.request_fields import numbers as number_fields
from service.domain.statuses import FieldCode
from service.domain.voice_prompts import DEFAULT_LANGUAGE, LANGUAGES, MAX_TEXT
from service.settings import Settings

RESOURCE = "Voice"
FIELDS = ("from", "to", "file", "text", "language", "retries", "retry_interval",
          "acknowledge", "acknowledge_prompt", "repeat", "repeat_interval")
DEFAULT_RETRY_INTERVAL = 5  # minutes
MAX_REPEAT = 20  # calls, the first included
DEFAULT_REPEAT_INTERVAL = 5  # minutes: an alert that waits an hour is no alert


@dataclass(frozen=True)
class Audio:
    """What a call plays: an uploaded file, or text spoken in `language`."""

    file_name: str | None
    text: str | None


@dataclass(frozen=True)
class VoiceRequest:
    from_number: str
    to_number: str
    file_name: str | None
    retries: int
    retry_interval: int
    text: str | None = None
    language: str = DEFAULT_LANGUAGE
    acknowledge: bool = False
    prompt: Audio | None = None  # acknowledge_prompt; None: the built-in one
    repeat_total: int = 1
    repeat_interval: int | None = None  # minutes; None without `repeat`


def audio_fields(resource: str, body: dict[str, Any], errors: list[FieldError],
                 prefix: str = "") -> Audio:
    """Exactly one of `file` (an uploaded file's name) or `text` (spoken)."""
    file_name, text = body.get("file"), body.get("text")
    if file_name is None and text is None:
        errors.append(FieldError(resource, f"{prefix}file", FieldCode.MISSING_FIELD,
                                 f"{prefix}file or {prefix}text is required"))
        return Audio(None, None)
    if file_name is not None and text is not None:
        errors.append(FieldError(resource, f"{prefix}text", FieldCode.INVALID,
                                 f"give {prefix}file or {prefix}text, not both"))
        return Audio(None, None)
    if file_name is not None:
        if not isinstance(file_name, str) or not valid_name(file_name):
            errors.append(FieldError(
                resource, f"{prefix}file", FieldCode.INVALID,
                f"{prefix}file must be the name of an uploaded file: 1 to 64 of "
                "A-Z a-z 0-9 . _ -"))
            return Audio(None, None)
        return Audio(file_name, None)
    if not isinstance(text, str) or not text.strip():
        errors.append(FieldError(resource, f"{prefix}text", FieldCode.INVALID,
                                 f"{prefix}text must be a non-empty string"))
    elif "\x00" in text:
        errors.append(FieldError(resource, f"{prefix}text", FieldCode.INVALID,
                                 f"{prefix}text contains NUL"))
    elif len(text) > MAX_TEXT:
        errors.append(FieldError(resource, f"{prefix}text", FieldCode.TOO_LONG,
                                 f"{prefix}text is {len(text)} characters; at most "
                                 f"{MAX_TEXT} allowed"))
    else:
        return Audio(None, text)
    return Audio(None, None)


def language_field(resource: str, body: dict[str, Any], errors: list[FieldError],
                   prefix: str = "") -> str:
    language = body.get("language")
    if language is None:
        return DEFAULT_LANGUAGE
    if not isinstance(language, str) or language not in LANGUAGES:
        errors.append(FieldError(resource, f"{prefix}language", FieldCode.INVALID,
                                 f"{prefix}language must be one of {', '.join(LANGUAGES)}"))
        return DEFAULT_LANGUAGE
    return language


def _prompt(body: dict[str, Any], acknowledge: bool, errors: list[FieldError]) -> Audio | None:
    prompt = body.get("acknowledge_prompt")
    if prompt is None:
        return None
    if not acknowledge:
        errors.append(FieldError(RESOURCE, "acknowledge_prompt", FieldCode.INVALID,
                                 "acknowledge_prompt needs acknowledge: true"))
        return None
    if not isinstance(prompt, dict):
        errors.append(FieldError(RESOURCE, "acknowledge_prompt", FieldCode.INVALID,
                                 'acknowledge_prompt must be {"file": ...} or {"text": ...}'))
        return None
    prefix = "acknowledge_prompt."
    before = len(errors)
    unknown_fields(RESOURCE, prompt, ("file", "text"), errors, prefix)
    audio = audio_fields(RESOURCE, prompt, errors, prefix)
    return audio if len(errors) == before else None


def parse_voice_request(body: Any, settings: Settings) -> VoiceRequest:
    body = require_object(RESOURCE, body)
    errors: list[FieldError] = []
    unknown_fields(RESOURCE, body, FIELDS, errors)
    numbers = number_fields(RESOURCE, body, errors)
    audio = audio_fields(RESOURCE, body, errors)
    language = language_field(RESOURCE, body, errors)
    retries = int_field(RESOURCE, body, "retries", 0, settings.max_voice_retries, errors)
    interval = int_field(RESOURCE, body, "retry_interval", 1, settings.max_repeat_interval,
                         errors)
    acknowledge = bool_field(RESOURCE, body, "acknowledge", False, errors)
    prompt = _prompt(body, acknowledge, errors)
    repeat = int_field(RESOURCE, body, "repeat", 1, MAX_REPEAT, errors)
    repeat_interval = int_field(RESOURCE, body, "repeat_interval", 1,
                                settings.max_repeat_interval, errors)
    if repeat is not None and not acknowledge:
        errors.append(FieldError(
            RESOURCE, "repeat", FieldCode.INVALID,
            "repeat needs acknowledge: true (calls that repeat with no way to stop them "
            "are refused)"))
    if repeat is not None and (retries is not None or interval is not None):
        errors.append(FieldError(
            RESOURCE, "retries", FieldCode.INVALID,
            "retries and retry_interval do not go with repeat: with repeat every call counts,"
            " busy and no-answer included"))
    if repeat_interval is not None and repeat is None:
        errors.append(FieldError(RESOURCE, "repeat_interval", FieldCode.INVALID,
                                 "repeat_interval needs repeat"))
    if errors:
        raise validation_failed(errors)
    return VoiceRequest(
        numbers["from"], numbers["to"], audio.file_name, retries or 0,
        interval or DEFAULT_RETRY_INTERVAL, text=audio.text, language=language,
        acknowledge=acknowledge, prompt=prompt, repeat_total=repeat or 1,
        repeat_interval=(repeat_interval or DEFAULT_REPEAT_INTERVAL) if repeat else None)
