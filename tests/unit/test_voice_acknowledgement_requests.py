"""The pure rules of voice acknowledgement requests: `file` xor `text`,
`language`, `acknowledge`, `acknowledge_prompt`, `repeat` only with
acknowledge, and the SMS's `escalate` (service/domain/*_requests.py)."""

from __future__ import annotations

from typing import Any

import pytest

from service.domain.sms_requests import Escalation, parse_sms_request
from service.domain.voice_prompts import LANGUAGES, MAX_TEXT
from service.domain.voice_requests import (
    DEFAULT_REPEAT_INTERVAL,
    MAX_REPEAT,
    Audio,
    parse_voice_request,
)

from .test_requests import FROM, SETTINGS, TO, refused


def voice(**fields: Any) -> dict[str, Any]:
    return {"from": FROM, "to": TO, **fields}


def sms(**fields: Any) -> dict[str, Any]:
    return {"from": FROM, "to": TO, "message": "Alarm", **fields}


def test_text_instead_of_a_file_defaults_to_english() -> None:
    req = parse_voice_request(voice(text="Fire in building 2"), SETTINGS)
    assert (req.file_name, req.text, req.language) == (None, "Fire in building 2", "en")
    assert not req.acknowledge and req.repeat_total == 1 and req.repeat_interval is None


@pytest.mark.parametrize("language", ["en", "sv"])
def test_english_and_swedish_are_spoken(language: str) -> None:
    assert language in LANGUAGES
    assert parse_voice_request(voice(text="x", language=language), SETTINGS).language == language


def test_text_of_the_largest_length_is_taken() -> None:
    assert parse_voice_request(voice(text="a" * MAX_TEXT), SETTINGS).text == "a" * MAX_TEXT


@pytest.mark.parametrize(("body", "expected"), [
    (voice(), {("file", "missing_field")}),
    (voice(file="a.wav", text="x"), {("text", "invalid")}),
    (voice(text="a" * (MAX_TEXT + 1)), {("text", "too_long")}),
    (voice(text="   "), {("text", "invalid")}),
    (voice(text="a\x00b"), {("text", "invalid")}),
    (voice(text=5), {("text", "invalid")}),
    (voice(text="x", language="tlh"), {("language", "invalid")}),
    (voice(text="x", language="EN"), {("language", "invalid")}),
    (voice(text="x", acknowledge="yes"), {("acknowledge", "invalid")}),
])
def test_bad_text_and_language(body: dict[str, Any], expected: set[tuple[str, str]]) -> None:
    assert refused(parse_voice_request, body) == expected


def test_repeat_until_acknowledged() -> None:
    req = parse_voice_request(voice(text="x", acknowledge=True, repeat=MAX_REPEAT,
                                    repeat_interval=2), SETTINGS)
    assert (req.acknowledge, req.repeat_total, req.repeat_interval) == (True, MAX_REPEAT, 2)
    default = parse_voice_request(voice(text="x", acknowledge=True, repeat=2), SETTINGS)
    assert default.repeat_interval == DEFAULT_REPEAT_INTERVAL


@pytest.mark.parametrize(("body", "expected"), [
    # A call that repeats with no way to stop it.
    (voice(text="x", repeat=2), {("repeat", "invalid")}),
    (voice(text="x", acknowledge=False, repeat=2), {("repeat", "invalid")}),
    (voice(text="x", acknowledge=True, repeat=MAX_REPEAT + 1), {("repeat", "out_of_range")}),
    (voice(text="x", acknowledge=True, repeat=0), {("repeat", "out_of_range")}),
    (voice(text="x", acknowledge=True, repeat_interval=3), {("repeat_interval", "invalid")}),
    (voice(text="x", acknowledge=True, repeat=2, retries=1), {("retries", "invalid")}),
    (voice(text="x", acknowledge=True, repeat=2, repeat_interval=0),
     {("repeat_interval", "out_of_range")}),
])
def test_bad_repeats(body: dict[str, Any], expected: set[tuple[str, str]]) -> None:
    assert refused(parse_voice_request, body) == expected


def test_acknowledge_prompt_as_text_or_file() -> None:
    spoken = parse_voice_request(voice(file="a.wav", acknowledge=True,
                                       acknowledge_prompt={"text": "Press 1"}), SETTINGS)
    assert spoken.prompt == Audio(None, "Press 1")
    played = parse_voice_request(voice(file="a.wav", acknowledge=True,
                                       acknowledge_prompt={"file": "p.wav"}), SETTINGS)
    assert played.prompt == Audio("p.wav", None)
    assert parse_voice_request(voice(file="a.wav", acknowledge=True), SETTINGS).prompt is None


@pytest.mark.parametrize(("prompt", "expected"), [
    ("Press 1", {("acknowledge_prompt", "invalid")}),
    ({}, {("acknowledge_prompt.file", "missing_field")}),
    ({"file": "p.wav", "text": "x"}, {("acknowledge_prompt.text", "invalid")}),
    ({"text": "x", "voice": "m"}, {("acknowledge_prompt.voice", "unknown_field")}),
    ({"file": "../p"}, {("acknowledge_prompt.file", "invalid")}),
])
def test_bad_acknowledge_prompts(prompt: Any, expected: set[tuple[str, str]]) -> None:
    body = voice(file="a.wav", acknowledge=True, acknowledge_prompt=prompt)
    assert refused(parse_voice_request, body) == expected


def test_acknowledge_prompt_needs_acknowledge() -> None:
    body = voice(file="a.wav", acknowledge_prompt={"text": "Press 1"})
    assert refused(parse_voice_request, body) == {("acknowledge_prompt", "invalid")}


def test_escalate() -> None:
    req = parse_sms_request(sms(repeat=3, escalate={"after": 2, "text": "Call", "language":
                                                    "sv"}), SETTINGS)
    assert req.escalate == Escalation(2, Audio(None, "Call"), "sv")
    single = parse_sms_request(sms(escalate={"after": 1, "file": "a.wav"}), SETTINGS)
    assert single.escalate == Escalation(1, Audio("a.wav", None), "en")
    assert parse_sms_request(sms(), SETTINGS).escalate is None


@pytest.mark.parametrize(("escalate", "expected"), [
    ({"after": 0, "text": "x"}, {("escalate.after", "out_of_range")}),
    ({"after": 4, "text": "x"}, {("escalate.after", "out_of_range")}),  # repeat is 3
    ({"after": "2", "text": "x"}, {("escalate.after", "invalid")}),
    ({"text": "x"}, {("escalate.after", "missing_field")}),
    ({"after": 1}, {("escalate.file", "missing_field")}),
    ({"after": 1, "file": "a.wav", "text": "x"}, {("escalate.text", "invalid")}),
    ({"after": 1, "text": "x" * (MAX_TEXT + 1)}, {("escalate.text", "too_long")}),
    ({"after": 1, "text": "x", "language": "xx"}, {("escalate.language", "invalid")}),
    ({"after": 1, "text": "x", "repeat": 2}, {("escalate.repeat", "unknown_field")}),
    ([1], {("escalate", "invalid")}),
])
def test_bad_escalations(escalate: Any, expected: set[tuple[str, str]]) -> None:
    assert refused(parse_sms_request, sms(repeat=3, escalate=escalate)) == expected
