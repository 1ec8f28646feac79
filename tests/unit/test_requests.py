"""Request bodies for POST /messages/sms and /messages/voice: what is taken,
and the field and code of every refusal (service/domain/*_requests.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from service.domain import request_fields
from service.domain.refusals import FieldError, Reason, Refused
from service.domain.sms_requests import SmsRequest, link_cost, parse_sms_request
from service.domain.voice_requests import (
    DEFAULT_RETRY_INTERVAL,
    VoiceRequest,
    parse_voice_request,
)
from service.settings import Settings

SETTINGS = Settings()
FROM = "+46700000000"
TO = "+46736265400"

Parse = Callable[[Any, Settings], object]


def sms(**fields: Any) -> dict[str, Any]:
    return {"from": FROM, "to": TO, "message": "hello", **fields}


def voice(**fields: Any) -> dict[str, Any]:
    return {"from": FROM, "to": TO, "file": "greeting.wav", **fields}


def refused(parse: Parse, body: Any, settings: Settings = SETTINGS) -> set[tuple[str, str]]:
    """The (field, code) pairs of the refusal `parse` raises for `body`."""
    with pytest.raises(Refused) as caught:
        parse(body, settings)
    exc = caught.value
    assert exc.reason == Reason.INVALID
    assert exc.message == "Validation Failed"
    assert exc.errors, "a validation refusal names its fields"
    for error in exc.errors:
        assert isinstance(error, FieldError)
        assert error.message
    return {(e.field, str(e.code)) for e in exc.errors}


# --- SMS ---------------------------------------------------------------------


def test_sms_minimal() -> None:
    assert parse_sms_request(sms(), SETTINGS) == SmsRequest(
        from_number=FROM, to_number=TO, text="hello", repeat_total=1, repeat_interval=None,
        tracked=False,
    )


def test_sms_repeat_alone_takes_the_default_interval_and_is_tracked() -> None:
    req = parse_sms_request(sms(repeat=3), SETTINGS)
    assert (req.repeat_total, req.repeat_interval, req.tracked) == (
        3, SETTINGS.default_repeat_interval, True)
    req = parse_sms_request(sms(repeat=2, repeat_interval=5), SETTINGS)
    assert (req.repeat_total, req.repeat_interval, req.tracked) == (2, 5, True)


def test_sms_integral_float_is_an_integer() -> None:
    assert parse_sms_request(sms(repeat=3.0), SETTINGS).repeat_total == 3


@pytest.mark.parametrize("body", [None, [], "text", 3, [sms()]])
def test_sms_body_must_be_an_object(body: Any) -> None:
    assert refused(parse_sms_request, body) == {("(body)", "invalid")}


def test_sms_every_missing_field_is_named_at_once() -> None:
    assert refused(parse_sms_request, {}) == {
        ("from", "missing_field"), ("to", "missing_field"), ("message", "missing_field")}


def test_sms_null_counts_as_missing() -> None:
    assert refused(parse_sms_request, sms(to=None)) == {("to", "missing_field")}


def test_sms_unknown_fields() -> None:
    assert refused(parse_sms_request, sms(text="hi", file="x.wav")) == {
        ("text", "unknown_field"), ("file", "unknown_field")}


@pytest.mark.parametrize("number", ["500&PJSIP/other", "+46@x", "46736265400",
                                    "+46736265400\r\nAction: Originate", 46736265400, ""])
def test_sms_numbers_must_be_e164(number: Any) -> None:
    assert refused(parse_sms_request, sms(to=number)) == {("to", "invalid")}
    assert refused(parse_sms_request, sms(**{"from": number})) == {("from", "invalid")}


@pytest.mark.parametrize("message", [3, ["hi"], {"t": "hi"}, True, "", "   \n", "hi\x00there"])
def test_sms_message_must_be_nonempty_text_without_nul(message: Any) -> None:
    assert refused(parse_sms_request, sms(message=message)) == {("message", "invalid")}


@pytest.mark.parametrize(
    ("ok", "too_long"),
    [
        ("a" * 160, "a" * 161),  # GSM-7 septets
        ("€" * 80, "€" * 81),  # the euro is an escape and a septet
        ("a" * 158 + "[", "a" * 159 + "["),
        ("ç" * 70, "ç" * 71),  # UCS-2 code units
        ("😀" * 35, "😀" * 36),  # an emoji is a surrogate pair
        ("a" * 68 + "😀", "a" * 69 + "😀"),  # one emoji moves all to UCS-2
    ],
)
def test_sms_one_segment_at_most(ok: str, too_long: str) -> None:
    assert parse_sms_request(sms(message=ok), SETTINGS).text == ok
    assert refused(parse_sms_request, sms(message=too_long)) == {("message", "too_long")}


def test_sms_with_repeat_leaves_room_for_the_tracked_link() -> None:
    # ' ' + 'http://127.0.0.1:8080/l/' + an 11-character token, in GSM-7.
    assert link_cost(SETTINGS, "GSM-7") == 1 + len(SETTINGS.link_base_url) + 1 + 11 == 36
    assert link_cost(SETTINGS, "UCS-2") == 36
    room = 160 - 36
    assert parse_sms_request(sms(message="a" * room, repeat=2), SETTINGS).tracked
    assert refused(parse_sms_request, sms(message="a" * (room + 1), repeat=2)) == {
        ("message", "too_long")}
    # Without repeat the full segment is there.
    assert not parse_sms_request(sms(message="a" * (room + 1)), SETTINGS).tracked
    # UCS-2: 70 - 36.
    assert parse_sms_request(sms(message="ç" * 34, repeat=2), SETTINGS).tracked
    assert refused(parse_sms_request, sms(message="ç" * 35, repeat=2)) == {
        ("message", "too_long")}


def test_sms_link_cost_follows_the_settings() -> None:
    longer = Settings(link_base_url="https://links.example.com/l/")  # trailing '/' dropped
    assert link_cost(longer, "GSM-7") == 1 + len("https://links.example.com/l") + 1 + 11
    room = 160 - link_cost(longer, "GSM-7")
    assert parse_sms_request(sms(message="a" * room, repeat=2), longer).tracked
    assert refused(parse_sms_request, sms(message="a" * (room + 1), repeat=2), longer) == {
        ("message", "too_long")}


def test_sms_too_long_message_says_how_long() -> None:
    with pytest.raises(Refused) as caught:
        parse_sms_request(sms(message="€" * 81), SETTINGS)
    [error] = caught.value.errors
    assert "162 septets" in error.message and "160" in error.message


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"repeat": 0}, {("repeat", "out_of_range")}),
        ({"repeat": -1}, {("repeat", "out_of_range")}),
        ({"repeat": SETTINGS.max_repeat + 1}, {("repeat", "out_of_range")}),
        ({"repeat": "3"}, {("repeat", "invalid")}),
        ({"repeat": True}, {("repeat", "invalid")}),  # a JSON boolean is not a number
        ({"repeat": 2.5}, {("repeat", "invalid")}),
        ({"repeat": 2, "repeat_interval": 0}, {("repeat_interval", "out_of_range")}),
        ({"repeat": 2, "repeat_interval": SETTINGS.max_repeat_interval + 1},
         {("repeat_interval", "out_of_range")}),
        ({"repeat": 2, "repeat_interval": "5"}, {("repeat_interval", "invalid")}),
        ({"repeat_interval": 5}, {("repeat_interval", "invalid")}),  # needs repeat
    ],
)
def test_sms_repeat_fields(fields: dict[str, Any], expected: set[tuple[str, str]]) -> None:
    assert refused(parse_sms_request, sms(**fields)) == expected


def test_sms_repeat_bounds_are_inclusive_and_from_settings() -> None:
    req = parse_sms_request(
        sms(repeat=SETTINGS.max_repeat, repeat_interval=SETTINGS.max_repeat_interval), SETTINGS)
    assert (req.repeat_total, req.repeat_interval) == (
        SETTINGS.max_repeat, SETTINGS.max_repeat_interval)
    assert parse_sms_request(sms(repeat=1, repeat_interval=1), SETTINGS).repeat_total == 1
    small = Settings(max_repeat=3, max_repeat_interval=10)
    assert refused(parse_sms_request, sms(repeat=4, repeat_interval=11), small) == {
        ("repeat", "out_of_range"), ("repeat_interval", "out_of_range")}


def test_sms_all_problems_in_one_refusal() -> None:
    body = {"from": "+46@x", "message": "", "repeat": 0, "extra": 1}
    assert refused(parse_sms_request, body) == {
        ("extra", "unknown_field"), ("from", "invalid"), ("to", "missing_field"),
        ("repeat", "out_of_range"), ("message", "invalid")}


# --- voice ---------------------------------------------------------------------


def test_voice_minimal() -> None:
    assert parse_voice_request(voice(), SETTINGS) == VoiceRequest(
        FROM, TO, "greeting.wav", 0, DEFAULT_RETRY_INTERVAL)


def test_voice_retries() -> None:
    req = parse_voice_request(voice(retries=SETTINGS.max_voice_retries, retry_interval=1),
                              SETTINGS)
    assert (req.retries, req.retry_interval) == (SETTINGS.max_voice_retries, 1)


@pytest.mark.parametrize("name", ["a", "greeting.wav", "A-Z_a-z.0-9", "x" * 64, "..."])
def test_voice_file_names_taken(name: str) -> None:
    assert parse_voice_request(voice(file=name), SETTINGS).file_name == name


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "../etc/passwd", "a/b", "/abs", "a\\b", "x" * 65, "a b", "a\nb",
     "grüße.wav", 3, ["a"]],
)
def test_voice_file_must_be_a_plain_name(name: Any) -> None:
    assert refused(parse_voice_request, voice(file=name)) == {("file", "invalid")}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, {("from", "missing_field"), ("to", "missing_field"), ("file", "missing_field")}),
        (voice(retries=-1), {("retries", "out_of_range")}),
        (voice(retries=SETTINGS.max_voice_retries + 1), {("retries", "out_of_range")}),
        (voice(retries="1"), {("retries", "invalid")}),
        (voice(retries=False), {("retries", "invalid")}),
        (voice(retry_interval=0), {("retry_interval", "out_of_range")}),
        (voice(retry_interval=SETTINGS.max_repeat_interval + 1),
         {("retry_interval", "out_of_range")}),
        (voice(message="hi"), {("message", "unknown_field")}),
        (voice(to="500&PJSIP/other"), {("to", "invalid")}),
        (voice(**{"from": "+46@x"}), {("from", "invalid")}),
        ([voice()], {("(body)", "invalid")}),
    ],
)
def test_voice_refusals(body: Any, expected: set[tuple[str, str]]) -> None:
    assert refused(parse_voice_request, body) == expected


def test_voice_retry_limit_from_settings() -> None:
    assert refused(parse_voice_request, voice(retries=2), Settings(max_voice_retries=1)) == {
        ("retries", "out_of_range")}


# --- shared field checks ----------------------------------------------------------


def test_int_field_collects_instead_of_raising() -> None:
    errors: list[FieldError] = []
    assert request_fields.int_field("R", {"n": 5}, "n", 1, 5, errors) == 5
    assert request_fields.int_field("R", {}, "n", 1, 5, errors) is None
    assert request_fields.int_field("R", {"n": 6}, "n", 1, 5, errors) is None
    assert request_fields.int_field("R", {"n": 0}, "n", 1, 5, errors) is None
    assert [(e.resource, e.field, e.code) for e in errors] == [
        ("R", "n", "out_of_range"), ("R", "n", "out_of_range")]


def test_numbers_returns_only_the_valid_ones() -> None:
    errors: list[FieldError] = []
    out = request_fields.numbers("R", {"from": FROM, "to": "+46@x"}, errors)
    assert out == {"from": FROM}
    assert [(e.field, e.code) for e in errors] == [("to", "invalid")]


def test_the_readmes_link_cost_is_the_measured_one() -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    said = re.search(r"appended \((\d+) with\s+the default link base\)", readme)
    assert said is not None, "README no longer states the link cost"
    assert int(said.group(1)) == link_cost(Settings(), "GSM-7") == link_cost(Settings(), "UCS-2")


@pytest.mark.parametrize("text", [
    " ", "\u200b" * 5, "\u200b\u200c\u200d\u2060\ufeff", " \n\t\u00a0\u3000", "\u202e\u2066",
    "\u3164\u3164", "\u2800", "\u0301\u0301", "\ue000", "\r\n",
])
def test_sms_with_no_visible_character_is_422(text: str) -> None:
    assert refused(parse_sms_request, sms(message=text)) == {("message", "invalid")}


@pytest.mark.parametrize("text", ["a", ".", "\u200b1\u200b", "😀", "é", "\u0301e", "€"])
def test_sms_with_one_visible_character_is_taken(text: str) -> None:
    assert parse_sms_request(sms(message=text), SETTINGS).text == text


@pytest.mark.parametrize(("given", "stored"), [
    ("hello\n", "hello"), ("hello\r\n\n", "hello"), ("two\nlines", "two\nlines"),
    ("\nlead", "\nlead"), ("space \t", "space \t"), ("nbsp\u00a0", "nbsp\u00a0"),
])
def test_trailing_line_breaks_are_removed_before_the_text_is_stored(given: str,
                                                                    stored: str) -> None:
    assert parse_sms_request(sms(message=given), SETTINGS).text == stored
    assert parse_sms_request(sms(message=given, repeat=2), SETTINGS).text == stored


def test_integers_too_long_to_convert_are_out_of_range() -> None:
    huge = request_fields.HUGE_INTEGER
    assert refused(parse_sms_request, sms(repeat=huge)) == {("repeat", "out_of_range")}
    assert refused(parse_voice_request, voice(retries=huge, retry_interval=huge)) == {
        ("retries", "out_of_range"), ("retry_interval", "out_of_range")}
    assert refused(parse_sms_request, sms(message=huge, to=huge)) == {
        ("message", "invalid"), ("to", "invalid")}


@pytest.mark.parametrize("parse, body", [(parse_sms_request, sms), (parse_voice_request, voice)])
def test_premium_destinations_are_refused_in_the_request(parse: Parse, body: Any) -> None:
    assert refused(parse, body(to="+19005550123")) == {("to", "destination_not_allowed")}
    # `from` is not a destination: the type check is for `to` only.
    assert refused(parse, body(**{"from": "+19005550123", "to": "+19005550123"})) == {
        ("to", "destination_not_allowed")}
