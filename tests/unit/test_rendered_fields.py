"""What the renderers write is what the OpenAPI document says they write.

Rows are built in Python (every column the views return, in every status, with
the optional times set and unset), rendered, and checked two ways: the keys
are the renderer's declared fields in their order, and the JSON validates
against the component schema the document serves. A field added to a renderer
but not to its declaration fails here. Pure: no database.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema_rs
import pytest

from service.domain.json_schema import Fields
from service.domain.statuses import (
    SMS_ACTIVE,
    SmsAttemptOutcome,
    SmsStatus,
    VoiceAttemptOutcome,
    VoiceOutcome,
    VoiceStatus,
)
from service.http import file_routes, openapi
from service.settings import Settings
from service.store import sms_messages, voice_messages

T0 = datetime(2011, 4, 22, 13, 33, 48, 123456, tzinfo=UTC)


def at(seconds: float, when: bool = True) -> datetime | None:
    return T0 + timedelta(seconds=seconds) if when else None


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="module")
def spec(settings: Settings) -> dict[str, Any]:
    return openapi.build_spec(settings)


def check(spec: dict[str, Any], component: str, rendered: Any, fields: Fields) -> None:
    """`rendered` (one object, or a list of them) has exactly `fields`, in order, and
    is valid for the document's component schema."""
    validator = jsonschema_rs.validator_for(
        {"$ref": f"#/components/schemas/{component}", "components": spec["components"]})
    for item in rendered if isinstance(rendered, list) else [rendered]:
        extra = [k for k in item if k not in fields and k != "attempts"]
        missing = [k for k in fields if k not in item]
        assert not extra, f"{component}: rendered but not declared (so not documented): {extra}"
        assert not missing, f"{component}: declared but not rendered: {missing}"
        assert [k for k in item if k != "attempts"] == list(fields), "declared order"
        # Through JSON, as a client receives it.
        errors = [e.message for e in validator.iter_errors(json.loads(json.dumps(item)))]
        assert not errors, f"{component}: {errors}"


def sms_row(status: SmsStatus) -> dict[str, Any]:
    repeated = status != SmsStatus.QUEUED
    sent = 0 if status == SmsStatus.QUEUED else 2
    return {
        "id": 42, "account_id": 7, "from_number": "+46736265400",
        "to_number": "+46736265449", "text": "Hello", "encoding": "GSM-7", "segments": 1,
        "body": "Hello http://127.0.0.1:8080/l/AbCdEfGhIjK" if repeated else "Hello",
        "repeat_total": 3 if repeated else 1, "repeat_interval": 60 if repeated else None,
        "link_token": "AbCdEfGhIjK" if repeated else None,
        "sent_count": 3 if status == SmsStatus.COMPLETED else sent, "failures": 0,
        "last_sent_at": at(5, sent > 0),
        "clicked_at": at(9, status == SmsStatus.CLICKED),
        "canceled_at": at(9, status == SmsStatus.CANCELED),
        "failed_at": at(9, status == SmsStatus.FAILED),
        "stop_on_reply": True,
        "replied_at": at(9, status == SmsStatus.REPLIED),
        "reply_id": 3 if status == SmsStatus.REPLIED else None,
        "opted_out_at": at(9, status == SmsStatus.OPTED_OUT),
        "delivered_count": 1 if sent else 0,
        "delivered_at": at(6, sent > 0),
        "due_at": at(60, status in SMS_ACTIVE),
        "lease_attempt_id": 5 if status == SmsStatus.SENDING else None,
        "created_at": T0, "updated_at": at(9),
        "status": str(status),
        "next_send_at": at(60, status in (SmsStatus.QUEUED, SmsStatus.SCHEDULED)),
        "escalate": None if status == SmsStatus.QUEUED else (
            '{"after": 2, "file": null, "text": "Fire", "language": "en", '
            '"speech_stem": "' + "b" * 32 + '", "prompt_stem": null, "confirm_stem": null, '
            '"wait_seconds": 60}'),
        "escalated_to": 44 if status == SmsStatus.ACKNOWLEDGED else None,
        "acknowledged_at": at(9, status == SmsStatus.ACKNOWLEDGED),
    }


def sms_attempts() -> list[dict[str, Any]]:
    done = [{"id": n, "send_number": n, "dispatcher": "d1", "transport": "ari-pjsip",
             "gateway": "node1", "started_at": at(n), "finished_at": at(n + 0.5),
             "outcome": str(outcome),
             "detail": "handed to Asterisk", "delivered": None, "report_stat": None,
             "report_error": None, "reported_at": None}
            for n, outcome in enumerate(SmsAttemptOutcome, 1)]
    # The carrier's reports: delivered, and undelivered with its error.
    reported = [{**done[0], "id": 7, "delivered": ok, "report_stat": stat,
                 "report_error": err, "reported_at": at(7)}
                for ok, stat, err in ((True, "DELIVRD", "000"), (False, "UNDELIV", "001"))]
    in_flight = {"id": 9, "send_number": 4, "dispatcher": "d1", "transport": "dongle-ami",
                 "gateway": None, "started_at": at(9), "finished_at": None, "outcome": None,
                 "detail": None,
                 "delivered": None, "report_stat": None, "report_error": None,
                 "reported_at": None}
    return [*done, *reported, in_flight]


@pytest.mark.parametrize("status", list(SmsStatus))
def test_sms_message_is_what_the_document_says(spec, settings, status):
    row = sms_row(status)
    check(spec, "SmsMessage", sms_messages.render(row, settings), sms_messages.FIELDS)
    check(spec, "SmsMessage", [sms_messages.render(row, settings)] * 2, sms_messages.FIELDS)
    full = sms_messages.render(row, settings, sms_attempts())
    check(spec, "SmsMessageWithAttempts", full, sms_messages.FIELDS)
    check(spec, "SmsAttempt", full["attempts"], sms_messages.ATTEMPT_FIELDS)
    check(spec, "SmsMessageWithAttempts", sms_messages.render(row, settings, []),
          sms_messages.FIELDS)


def voice_row(status: VoiceStatus) -> dict[str, Any]:
    finished = status in set(VoiceOutcome)
    answered = status in (VoiceStatus.COMPLETED, VoiceStatus.FAILED)
    return {
        "id": 43, "account_id": 7, "from_number": "+46736265400",
        "to_number": "+46736265449", "file_name": "greeting.wav", "retries": 2,
        "retry_interval": 5, "attempts_made": 0 if status == VoiceStatus.QUEUED else 1,
        "outcome": str(status) if finished else None,
        "cause_code": 16 if finished else None,
        "cause_text": "Normal Clearing" if finished else None,
        "answered_at": at(3, answered), "sent_at": at(3.2, answered),
        "ended_at": at(13, answered), "heard_at": at(99, status == VoiceStatus.COMPLETED),
        "canceled_at": at(20, status == VoiceStatus.CANCELED),
        "finished_at": at(20, finished),
        "due_at": at(60, not finished), "lease_attempt_id": 8 if status == "calling" else None,
        "created_at": T0, "updated_at": at(20),
        "status": str(status),
        "next_attempt_at": at(60, status in (VoiceStatus.QUEUED, VoiceStatus.SCHEDULED)),
        "duration": 9.8765 if answered else None,
        "text": None, "language": None, "acknowledge": status == VoiceStatus.ACKNOWLEDGED,
        "prompt_file": None, "prompt_text": "Press 1" if status == VoiceStatus.FAILED else None,
        "repeat_total": 3, "repeat_interval": 5, "calls_made": 1,
        "acknowledged_at": at(9, status == VoiceStatus.ACKNOWLEDGED),
        "last_key": "1" if status == VoiceStatus.ACKNOWLEDGED else None,
        "escalated_from": 42 if status == VoiceStatus.ACKNOWLEDGED else None,
    }


def voice_attempts() -> list[dict[str, Any]]:
    done = [{"id": n, "dispatcher": "d1", "gateway": "node2", "started_at": at(n),
             "answered_at": at(n + 1),
             "playback_started_at": at(n + 1.1), "finished_at": at(n + 9),
             "outcome": str(outcome), "cause_code": 16, "cause_text": "Normal Clearing",
             "detail": "answered; the file played to the end",
             "prompt_started_at": at(n + 5), "keys": "91", "acknowledged_at": at(n + 7)}
            for n, outcome in enumerate(VoiceAttemptOutcome, 1)]
    ringing = {"id": 9, "dispatcher": "d2", "gateway": "default", "started_at": at(30),
               "answered_at": None,
               "playback_started_at": None, "finished_at": None, "outcome": None,
               "cause_code": None, "cause_text": None, "detail": None,
               "prompt_started_at": None, "keys": "", "acknowledged_at": None}
    return [*done, ringing]


@pytest.mark.parametrize("status", list(VoiceStatus))
def test_voice_message_is_what_the_document_says(spec, settings, status):
    row = voice_row(status)
    check(spec, "VoiceMessage", voice_messages.render(row, settings), voice_messages.FIELDS)
    full = voice_messages.render(row, settings, voice_attempts())
    check(spec, "VoiceMessageWithAttempts", full, voice_messages.FIELDS)
    check(spec, "VoiceAttempt", full["attempts"], voice_messages.ATTEMPT_FIELDS)


def test_sound_file_is_what_the_document_says(spec, settings):
    row = {"id": 3, "account_id": 7, "name": "greeting.wav", "stem": "a" * 32,
           "duration_ms": 1500, "size_bytes": 48_044, "source_format": "WAV",
           "source_rate": 16000, "formats": ["ulaw", "alaw", "wav16"], "created_at": T0,
           "updated_at": at(1), "old_stem": None}
    rendered = file_routes.render(row, settings)
    check(spec, "SoundFile", rendered, file_routes.fields(settings))
    check(spec, "SoundFile", [rendered], file_routes.fields(settings))


def test_the_document_serves_the_declarations(spec, settings):
    """The component schemas are built from the declarations, not written again."""
    schemas = spec["components"]["schemas"]
    for component, fields in [("SmsMessage", sms_messages.FIELDS),
                              ("SmsAttempt", sms_messages.ATTEMPT_FIELDS),
                              ("VoiceMessage", voice_messages.FIELDS),
                              ("VoiceAttempt", voice_messages.ATTEMPT_FIELDS),
                              ("SoundFile", file_routes.fields(settings))]:
        assert schemas[component]["properties"] == json.loads(json.dumps(fields)), component
        assert schemas[component]["required"] == list(fields), component
        assert schemas[component]["additionalProperties"] is False, component
    for component, base in [("SmsMessageWithAttempts", sms_messages.FIELDS),
                            ("VoiceMessageWithAttempts", voice_messages.FIELDS)]:
        assert schemas[component]["required"] == [*base, "attempts"], component
