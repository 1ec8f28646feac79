"""OpenAPI 3.1 description of the API, served at /openapi.json, and a docs page.

The document is built here from the settings (the limits it states are the ones
the running API enforces) and describes every route in `app.create_app`;
`tests/test_openapi.py` checks that no route is missing and runs schemathesis
against the live API with it. `/docs` is the same document rendered as one
self-contained HTML page on the server: no script, no CDN, readable offline.
"""

from __future__ import annotations

import functools
import json
from html import escape
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from service.domain import sms_text, tracked_links
from service.http import idempotency, json_io, sms_requests
from service.settings import Settings
from service.store import sound_files

OPENAPI_VERSION = "3.1.0"
API_VERSION = "0.1.0"

E164_PATTERN = r"^\+[1-9][0-9]{1,14}$"
FILE_NAME_PATTERN = f"^{sound_files.NAME_SHAPE.pattern}$"
LINK_TOKEN_PATTERN = f"^{tracked_links.TOKEN_SHAPE.pattern}$"
IDEMPOTENCY_KEY_PATTERN = r"^[\x20-\x7e]+$"  # printable ASCII

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    """The same schema, also allowing null (OpenAPI 3.1: a type list)."""
    out = dict(schema)
    out["type"] = [schema["type"], "null"]
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    return out


TIMESTAMP: Schema = {
    "type": "string",
    "format": "date-time",
    "description": "ISO 8601 in UTC to the second, like 2011-04-22T13:33:48Z.",
    "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$",
}
MAYBE_TIMESTAMP = _nullable(TIMESTAMP)
URL: Schema = {"type": "string", "format": "uri"}

SMS_STATUSES = ["queued", "sending", "scheduled", "completed", "clicked", "canceled", "failed"]
SMS_ATTEMPT_OUTCOMES = ["sent", "failed", "unknown"]
VOICE_OUTCOMES = ["completed", "busy", "no-answer", "rejected", "failed", "canceled"]
VOICE_STATUSES = ["queued", "calling", "scheduled", *VOICE_OUTCOMES]
FIELD_ERROR_CODES = ["missing_field", "invalid", "too_long", "out_of_range", "unknown_field"]


def _e164(description: str) -> Schema:
    return {
        "type": "string",
        "pattern": E164_PATTERN,
        "description": description
        + " E.164 exactly: '+' then 2 to 15 ASCII digits, no spaces or other characters,"
        " and a valid number for its country (checked with libphonenumber, which a"
        " pattern cannot express).",
        "examples": ["+46736265400"],
    }


def _file_name(description: str) -> Schema:
    return {
        "type": "string",
        "pattern": FILE_NAME_PATTERN,
        "not": {"enum": [".", ".."]},
        "description": description + " 1 to 64 of A-Z a-z 0-9 . _ - (not '.' or '..').",
    }


def _schemas(settings: Settings) -> dict[str, Schema]:
    link_cost = sms_requests.link_cost(settings, sms_text.GSM7)
    gsm, ucs = sms_text.SINGLE_LIMIT[sms_text.GSM7], sms_text.SINGLE_LIMIT[sms_text.UCS2]
    return {
        "Error": {
            "type": "object",
            "description": "Every error but a validation error.",
            "required": ["message"],
            "additionalProperties": False,
            "properties": {"message": {"type": "string", "description": "What went wrong."}},
        },
        "FieldError": {
            "type": "object",
            "required": ["resource", "field", "code", "message"],
            "additionalProperties": False,
            "properties": {
                "resource": {"type": "string", "enum": ["Sms", "Voice", "File"],
                             "description": "The resource the request was about."},
                "field": {"type": "string", "description":
                          "The field, query parameter or header at fault; '(body)' when the"
                          " body is not a JSON object."},
                "code": {"type": "string", "enum": FIELD_ERROR_CODES},
                "message": {"type": "string", "description": "A readable explanation."},
            },
        },
        "ValidationError": {
            "type": "object",
            "description": "422: the request was understood but a field is wrong.",
            "required": ["message", "errors"],
            "additionalProperties": False,
            "properties": {
                "message": {"type": "string", "const": "Validation Failed"},
                "errors": {"type": "array", "minItems": 1, "items": _ref("FieldError")},
            },
        },
        "SmsRequest": {
            "type": "object",
            "required": ["from", "to", "message"],
            "additionalProperties": False,
            "properties": {
                "from": _e164("Sender number."),
                "to": _e164("Recipient number."),
                "message": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": gsm,
                    "description":
                        f"The text: one SMS segment, at most {gsm} GSM-7 septets (the"
                        " characters €[]{}^~|\\ and form feed count two), or at most"
                        f" {ucs} UCS-2 code units (characters outside the Basic Multilingual"
                        " Plane, such as most emoji, count two) when any character is"
                        " outside GSM-7. With `repeat` a space and the tracked link are"
                        f" appended, so the limit shrinks by {link_cost} septets (UCS-2: as many"
                        " units). It must contain a"
                        " character other than white space, and no NUL.",
                },
                "repeat": {
                    "type": ["integer", "null"],
                    "minimum": 1,
                    "maximum": settings.max_repeat,
                    "description":
                        "Total number of sends. Giving it appends a tracked link; the sends"
                        " stop once the link is opened. Null is the same as leaving it out"
                        " (sent once, no link).",
                },
                "repeat_interval": {
                    "type": ["integer", "null"],
                    "minimum": 1,
                    "maximum": settings.max_repeat_interval,
                    "description":
                        "Minutes between sends, counted from the actual send. Default"
                        f" {settings.default_repeat_interval} when `repeat` is given; only"
                        " allowed with `repeat`. Null is the same as leaving it out.",
                },
            },
            # repeat_interval (not null) needs repeat (not null).
            "anyOf": [
                {"properties": {"repeat_interval": {"type": "null"}}},
                {"required": ["repeat"], "properties": {"repeat": {"type": "integer"}}},
            ],
            "example": {"from": "+46736265400", "to": "+46736265449",
                        "message": "Your appointment is tomorrow at 10:00.", "repeat": 3,
                        "repeat_interval": 60},
        },
        "SmsAttempt": {
            "type": "object",
            "required": ["id", "send_number", "dispatcher", "transport", "started_at",
                         "finished_at", "outcome", "detail"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "integer", "minimum": 1},
                "send_number": {"type": "integer", "minimum": 1,
                                "description": "Which of the `repeat` sends this was."},
                "dispatcher": {"type": "string"},
                "transport": {"type": "string", "examples": ["ari-pjsip", "dongle-ami"]},
                "started_at": TIMESTAMP,
                "finished_at": MAYBE_TIMESTAMP,
                "outcome": _nullable({
                    "type": "string", "enum": SMS_ATTEMPT_OUTCOMES,
                    "description": "sent: handed to the trunk; unknown: the dispatcher lost"
                                   " its lease mid-send, so it may have been sent; null while"
                                   " in progress."}),
                "detail": {"type": ["string", "null"]},
            },
        },
        "SmsMessage": {
            "type": "object",
            "required": ["id", "url", "from", "to", "message", "last_sent_at", "repeat",
                         "repeat_interval", "created_at", "updated_at", "status",
                         "sent_count", "next_send_at", "clicked_at", "canceled_at",
                         "encoding", "segments"],
            "additionalProperties": False,
            "properties": _sms_properties(),
        },
        "SmsMessageWithAttempts": {
            "type": "object",
            "required": ["id", "url", "from", "to", "message", "last_sent_at", "repeat",
                         "repeat_interval", "created_at", "updated_at", "status",
                         "sent_count", "next_send_at", "clicked_at", "canceled_at",
                         "encoding", "segments", "attempts"],
            "additionalProperties": False,
            "properties": {
                **_sms_properties(),
                "attempts": {"type": "array", "items": _ref("SmsAttempt"),
                             "description": "Every send attempt, oldest first."},
            },
        },
        "VoiceRequest": {
            "type": "object",
            "required": ["from", "to", "file"],
            "additionalProperties": False,
            "properties": {
                "from": _e164("Caller id."),
                "to": _e164("Number to call."),
                "file": _file_name(
                    "Name of a sound file this account uploaded with PUT /files/{name}"
                    " (else 422)."),
                "retries": {
                    "type": ["integer", "null"], "minimum": 0,
                    "maximum": settings.max_voice_retries,
                    "description": "Extra attempts after busy, no-answer, or a call that"
                                   " ended before the file played to the end. Default 0;"
                                   " null is the same as leaving it out."},
                "retry_interval": {
                    "type": ["integer", "null"], "minimum": 1,
                    "maximum": settings.max_repeat_interval,
                    "description": "Minutes between attempts. Default 5; null is the same as"
                                   " leaving it out."},
            },
            "example": {"from": "+46736265400", "to": "+46736265449", "file": "greeting.wav",
                        "retries": 1, "retry_interval": 5},
        },
        "VoiceAttempt": {
            "type": "object",
            "required": ["id", "dispatcher", "started_at", "answered_at",
                         "playback_started_at", "finished_at", "outcome", "cause",
                         "cause_text", "detail"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "integer", "minimum": 1},
                "dispatcher": {"type": "string"},
                "started_at": TIMESTAMP,
                "answered_at": MAYBE_TIMESTAMP,
                "playback_started_at": MAYBE_TIMESTAMP,
                "finished_at": MAYBE_TIMESTAMP,
                "outcome": _nullable({"type": "string", "enum": [*VOICE_OUTCOMES, "unknown"],
                                      "description": "null while the call is in progress."}),
                "cause": {"type": ["integer", "null"], "description": "Q.850 cause code."},
                "cause_text": {"type": ["string", "null"]},
                "detail": {"type": ["string", "null"]},
            },
        },
        "VoiceMessage": {
            "type": "object",
            "required": list(_voice_properties()),
            "additionalProperties": False,
            "properties": _voice_properties(),
        },
        "VoiceMessageWithAttempts": {
            "type": "object",
            "required": [*_voice_properties(), "attempts"],
            "additionalProperties": False,
            "properties": {
                **_voice_properties(),
                "attempts": {"type": "array", "items": _ref("VoiceAttempt"),
                             "description": "Every call attempt, oldest first."},
            },
        },
        "SoundFile": {
            "type": "object",
            "required": ["name", "url", "duration", "size", "source_format", "source_rate",
                         "formats", "created_at", "updated_at"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "pattern": FILE_NAME_PATTERN},
                "url": URL,
                "duration": {"type": "number", "exclusiveMinimum": 0,
                             "maximum": settings.max_sound_seconds,
                             "description": "Seconds, to the millisecond."},
                "size": {"type": "integer", "minimum": 1,
                         "maximum": settings.max_upload_bytes,
                         "description": "Bytes of the upload as received."},
                "source_format": {"type": "string", "examples": ["WAV", "MP3", "OGG", "FLAC"],
                                  "description": "The uploaded container, as libsndfile"
                                                 " names it."},
                "source_rate": {"type": "integer", "minimum": 1,
                                "description": "Sample rate of the upload, Hz."},
                "formats": {"type": "array",
                            "items": {"type": "string", "enum": list(sound_files.FORMATS)},
                            "description": "What Asterisk plays: raw u-law and A-law at 8 kHz,"
                                           " 16 kHz WAV."},
                "created_at": TIMESTAMP,
                "updated_at": TIMESTAMP,
            },
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "additionalProperties": False,
            "properties": {"status": {"type": "string", "const": "ok"}},
        },
        "Readiness": {
            "type": "object",
            "required": ["status", "checks"],
            "additionalProperties": False,
            "properties": {
                "status": {"type": "string", "enum": ["ready", "not ready"]},
                "checks": {
                    "type": "object",
                    "required": ["postgres", "asterisk"],
                    "additionalProperties": {"type": "string"},
                    "properties": {
                        "postgres": {"type": "string",
                                     "description": "\"ok\", or the error text."},
                        "asterisk": {"type": "string",
                                     "description": "\"ok\", or the error text."},
                    },
                },
            },
        },
    }


def _sms_properties() -> dict[str, Schema]:
    return {
        "id": {"type": "integer", "minimum": 1},
        "url": URL,
        "from": {"type": "string", "pattern": E164_PATTERN},
        "to": {"type": "string", "pattern": E164_PATTERN},
        "message": {"type": "string",
                    "description": "The text as sent, with the tracked link when `repeat`"
                                   " was given."},
        "last_sent_at": MAYBE_TIMESTAMP,
        "repeat": {"type": "integer", "minimum": 0,
                   "description": "Sends still to come after the first (10 asked shows 9);"
                                  " 0 once nothing is left to send."},
        "repeat_interval": {"type": ["integer", "null"], "minimum": 1,
                            "description": "Minutes; null without `repeat`."},
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
        "status": {"type": "string", "enum": SMS_STATUSES},
        "sent_count": {"type": "integer", "minimum": 0},
        "next_send_at": MAYBE_TIMESTAMP,
        "clicked_at": MAYBE_TIMESTAMP,
        "canceled_at": MAYBE_TIMESTAMP,
        "encoding": {"type": "string", "enum": [sms_text.GSM7, sms_text.UCS2]},
        "segments": {"type": "integer", "minimum": 1},
    }


def _voice_properties() -> dict[str, Schema]:
    return {
        "id": {"type": "integer", "minimum": 1},
        "url": URL,
        "from": {"type": "string", "pattern": E164_PATTERN},
        "to": {"type": "string", "pattern": E164_PATTERN},
        "file": {"type": "string", "pattern": FILE_NAME_PATTERN},
        "sent_at": {**MAYBE_TIMESTAMP, "description": "When the answered call started"
                                                      " playing the file."},
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
        "status": {"type": "string", "enum": VOICE_STATUSES,
                   "description": "queued, calling, scheduled (for a retry), then the"
                                  " outcome."},
        "answered_at": MAYBE_TIMESTAMP,
        "ended_at": MAYBE_TIMESTAMP,
        "duration": {"type": ["number", "null"], "minimum": 0,
                     "description": "Seconds from answer to hang-up, to 0.1 s."},
        "outcome": _nullable({"type": "string", "enum": VOICE_OUTCOMES,
                              "description": "null until the message is finished."}),
        "cause": {"type": ["integer", "null"], "description": "Q.850 cause code."},
        "cause_text": {"type": ["string", "null"]},
        "retries": {"type": "integer", "minimum": 0},
        "retry_interval": {"type": "integer", "minimum": 1, "description": "Minutes."},
        "attempts_made": {"type": "integer", "minimum": 0},
        "next_attempt_at": MAYBE_TIMESTAMP,
        "heard_at": {**MAYBE_TIMESTAMP, "description": "When the callee heard it again by"
                                                       " calling back."},
        "canceled_at": MAYBE_TIMESTAMP,
    }


# --- headers ---------------------------------------------------------------

def _rate_limit_headers(required: bool) -> dict[str, Schema]:
    when = "" if required else " Present once the request reached the endpoint."
    integer: Schema = {"type": "integer", "minimum": 0}
    return {
        "X-RateLimit-Limit": {"required": required, "schema": integer,
                              "description": "Requests allowed in the hour's window." + when},
        "X-RateLimit-Remaining": {"required": required, "schema": integer,
                                  "description": "Requests left in this window." + when},
        "X-RateLimit-Used": {"required": required, "schema": integer,
                             "description": "Requests counted in this window, errors and"
                                            " 429s included." + when},
        "X-RateLimit-Reset": {"required": required, "schema": integer,
                              "description": "When the window ends, epoch seconds." + when},
    }


LOCATION_HEADER: Schema = {"required": True, "schema": URL,
                           "description": "URL of the created resource."}
REPLAYED_HEADER: Schema = {
    "required": False, "schema": {"type": "string", "const": "true"},
    "description": "Present when this is the stored response of an earlier request with the"
                   " same Idempotency-Key and body."}
LINK_HEADER: Schema = {
    "required": True, "schema": {"type": "string"},
    "description": 'Pagination: `<url>; rel="next"` (when the page is full) and'
                   ' `<url>; rel="first"`.'}


def _json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ok(description: str, schema: Schema | None,
        headers: dict[str, Schema] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description,
                           "headers": {**(headers or {}), **_rate_limit_headers(True)}}
    if schema is not None:
        out["content"] = _json(schema)
    return out


def _error(description: str, rate_limited: bool | None = True,
           schema: Schema | None = None, headers: dict[str, Schema] | None = None
           ) -> dict[str, Any]:
    """An authenticated route's error; rate_limited None: headers may be missing."""
    all_headers = dict(headers or {})
    if rate_limited is not None:
        all_headers.update(_rate_limit_headers(rate_limited))
    out: dict[str, Any] = {"description": description,
                           "content": _json(schema or _ref("Error"))}
    if all_headers:
        out["headers"] = all_headers
    return out


def _auth_errors() -> dict[str, Any]:
    return {
        "401": _error(
            "Missing, malformed, unknown or revoked API key. Carries no rate-limit headers.",
            rate_limited=None,
            headers={"WWW-Authenticate": {"required": True, "schema": {"type": "string"},
                                          "description": 'Bearer realm="amivono"'}}),
        "429": _error(
            "Over the account's requests per hour.",
            headers={"Retry-After": {"required": True,
                                     "schema": {"type": "integer", "minimum": 1},
                                     "description": "Seconds until the window ends."}}),
    }


NOT_FOUND = _error(
    "No such resource for this account (another account's is not found either), or a path"
    " the routes do not take (such as an id that is not a number), which the router answers"
    " before authentication, without rate-limit headers.", rate_limited=False)
INVALID_JSON = _error("The body is not JSON (or not UTF-8 / valid Unicode).")
TOO_LARGE_JSON = _error(
    f"The body is larger than {json_io.MAX_BODY_BYTES} bytes.")


def _validation(description: str) -> dict[str, Any]:
    return _error(description, schema=_ref("ValidationError"))


# --- parameters ----------------------------------------------------------

def _message_id(noun: str) -> Schema:
    return {"name": "message_id", "in": "path", "required": True,
            "description": f"The id of {noun}.",
            "schema": {"type": "integer", "minimum": 1, "maximum": json_io.BIGINT_MAX}}


FILE_NAME_PARAM: Schema = {
    "name": "name", "in": "path", "required": True,
    "description": "The file's name within the account.",
    "schema": _file_name("File name;"),
}
IDEMPOTENCY_PARAM: Schema = {
    "name": idempotency.HEADER, "in": "header", "required": False,
    "description": "Makes the POST safe to retry for 24 hours (per account): the same key and"
                   " body replay the first response with `Idempotent-Replayed: true`;"
                   " another body is 422; a duplicate while the first is in progress is 409."
                   " Only successful creations keep the key.",
    "schema": {"type": "string", "minLength": 1, "maxLength": idempotency.MAX_KEY_LENGTH,
               "pattern": IDEMPOTENCY_KEY_PATTERN},
}


def _page_params() -> list[Schema]:
    return [
        {"name": "per_page", "in": "query", "required": False,
         "description": "Items per page, newest first.",
         "schema": {"type": "integer", "minimum": 1, "maximum": json_io.MAX_PER_PAGE,
                    "default": json_io.DEFAULT_PER_PAGE}},
        {"name": "before", "in": "query", "required": False,
         "description": "Only items with a smaller id (keyset pagination: take it from the"
                        " `next` Link).",
         "schema": {"type": "integer", "minimum": 1, "maximum": 2**62}},
    ]


# --- operations ----------------------------------------------------------

def _message_operations(kind: str, title: str, noun: str, request: str, item: str,
                        detail: str, create_doc: str) -> dict[str, dict[str, Any]]:
    """The four operations of /messages/sms or /messages/voice; `noun` like "an SMS"."""
    base = f"/messages/{kind}"
    tag = f"{title} messages"
    plural = "SMS messages" if kind == "sms" else "voice messages"
    conflict = _error(f"A request with this {idempotency.HEADER} is still in progress.")
    return {
        base: {
            "post": {
                "operationId": f"create_{kind}",
                "tags": [tag],
                "summary": f"Send {noun}",
                "description": create_doc,
                "parameters": [IDEMPOTENCY_PARAM],
                "requestBody": {"required": True, "content": _json(_ref(request))},
                "responses": {
                    "201": _ok("Created (or replayed with Idempotent-Replayed).",
                               _ref(detail),
                               {"Location": LOCATION_HEADER,
                                "Idempotent-Replayed": REPLAYED_HEADER}),
                    "400": INVALID_JSON,
                    **_auth_errors(),
                    "409": conflict,
                    "413": TOO_LARGE_JSON,
                    "422": _validation(
                        "A field is missing or wrong, an unknown field was sent, or the"
                        f" {idempotency.HEADER} was used with another body."),
                },
            },
            "get": {
                "operationId": f"list_{kind}",
                "tags": [tag],
                "summary": f"List {plural}, newest first",
                "parameters": _page_params(),
                "responses": {
                    "200": _ok("A page of messages (without their attempts).",
                               {"type": "array", "items": _ref(item)},
                               headers={"Link": LINK_HEADER}),
                    **_auth_errors(),
                    "422": _validation("per_page or before is not an integer in range."),
                },
            },
        },
        f"{base}/{{message_id}}": {
            "get": {
                "operationId": f"get_{kind}",
                "tags": [tag],
                "summary": f"Get {noun} with its attempts",
                "parameters": [_message_id(noun)],
                "responses": {
                    "200": _ok("The message.", _ref(detail)),
                    **_auth_errors(),
                    "404": NOT_FOUND,
                },
            },
            "delete": {
                "operationId": f"cancel_{kind}",
                "tags": [tag],
                "summary": f"Cancel {noun}",
                "description": "Cancels what is still to come"
                               + (" and hangs up a call in progress" if kind == "voice"
                                  else " (a send in flight still finishes)")
                               + ". Canceling a canceled message returns it again.",
                "parameters": [_message_id(noun)],
                "responses": {
                    "200": _ok("The message, now canceled.", _ref(detail)),
                    **_auth_errors(),
                    "404": NOT_FOUND,
                    "409": _error("Nothing is left to cancel (the message is finished)."),
                },
            },
        },
    }


def _file_operations(settings: Settings) -> dict[str, dict[str, Any]]:
    tag = "Sound files"
    name_invalid = _validation("The name is not 1 to 64 of A-Z a-z 0-9 . _ -.")
    binary: Schema = {"type": "string", "format": "binary",
                      "contentMediaType": "application/octet-stream"}
    file_response = _ok("The file.", _ref("SoundFile"), {"Location": LOCATION_HEADER})
    return {
        "/files": {
            "get": {
                "operationId": "list_files",
                "tags": [tag],
                "summary": "List the account's sound files, by name",
                "responses": {
                    "200": _ok("All the account's files.",
                               {"type": "array", "items": _ref("SoundFile")}),
                    **_auth_errors(),
                },
            },
        },
        "/files/{name}": {
            "put": {
                "operationId": "put_file",
                "tags": [tag],
                "summary": "Upload or replace a sound file",
                "description":
                    "The body is the audio file itself (WAV, MP3, OGG/Vorbis, Opus, FLAC; any"
                    " rate and channel count); the Content-Type is not relied on. It is"
                    " decoded once, mixed to mono and stored as 8 kHz u-law and A-law and"
                    f" 16 kHz WAV. At most {settings.max_upload_bytes} bytes, and"
                    f" {sound_files.MIN_SECONDS} to {settings.max_sound_seconds:g} seconds"
                    " of audio.",
                "parameters": [FILE_NAME_PARAM],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/octet-stream": {"schema": binary},
                        "audio/*": {"schema": binary},
                    },
                },
                "responses": {
                    "200": {**file_response, "description": "Replaced an existing file."},
                    "201": {**file_response, "description": "Created a new file."},
                    **_auth_errors(),
                    "404": NOT_FOUND,
                    "413": _error(f"The upload is larger than {settings.max_upload_bytes}"
                                  " bytes."),
                    "415": _error("Not a supported audio file."),
                    "422": _error(
                        "An invalid name (a validation error), or audio that cannot be"
                        " used: an empty body, a truncated WAV, audio that cannot be decoded,"
                        " shorter or longer than allowed (a plain message).",
                        schema={"oneOf": [_ref("ValidationError"), _ref("Error")]}),
                },
            },
            "get": {
                "operationId": "get_file",
                "tags": [tag],
                "summary": "Get a sound file's description",
                "parameters": [FILE_NAME_PARAM],
                "responses": {
                    "200": _ok("The file.", _ref("SoundFile")),
                    **_auth_errors(),
                    "404": NOT_FOUND,
                    "422": name_invalid,
                },
            },
            "delete": {
                "operationId": "delete_file",
                "tags": [tag],
                "summary": "Delete a sound file",
                "parameters": [FILE_NAME_PARAM],
                "responses": {
                    "204": _ok("Deleted.", None),
                    **_auth_errors(),
                    "404": NOT_FOUND,
                    "409": _error("A queued voice message still needs the file."),
                    "422": name_invalid,
                },
            },
        },
    }


def _public_operations(settings: Settings) -> dict[str, dict[str, Any]]:
    html = {"text/html": {"schema": {"type": "string"}}}
    link_path = urlsplit(settings.link_base_url).path.rstrip("/") + "/{token}"
    token = {"name": "token", "in": "path", "required": True,
             "description": "The link's token: 11 of A-Z a-z 0-9.",
             "schema": {"type": "string", "pattern": LINK_TOKEN_PATTERN}}
    link_responses = {
        "200": {"description": "The link is valid: a thank-you page (the first opening is"
                               " recorded as the click) or, for a preview or prefetch, a"
                               " neutral page.",
                "headers": {"Cache-Control": {"required": True,
                                              "schema": {"type": "string",
                                                         "const": "no-store"}}},
                "content": html},
        "404": {"description": "No such link: an HTML page, or the router's JSON error when"
                               " the path does not take the token's form at all.",
                "content": {**html, **_json(_ref("Error"))}},
    }
    plain = "text/plain"
    return {
        link_path: {
            "get": {
                "operationId": "open_link",
                "tags": ["Tracked link"],
                "summary": "The tracked link a person opens",
                "description": "Opening it stops the repeats of its SMS. HEAD, prefetches"
                               " (Sec-Purpose/Purpose: prefetch), an empty User-Agent and link"
                               " unfurlers and crawlers are not clicks.",
                "security": [],
                "parameters": [token],
                "responses": link_responses,
            },
            "head": {
                "operationId": "check_link",
                "tags": ["Tracked link"],
                "summary": "The tracked link, without a body; never a click",
                "security": [],
                "parameters": [token],
                "responses": link_responses,
            },
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "tags": ["Operations"],
                "summary": "Liveness: the API process answers",
                "security": [],
                "responses": {"200": {"description": "Alive.",
                                      "content": _json(_ref("Health"))}},
            },
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "tags": ["Operations"],
                "summary": "Readiness: PostgreSQL and the gateway Asterisk answer",
                "security": [],
                "responses": {
                    "200": {"description": "Ready: every check is \"ok\".",
                            "content": _json({
                                "allOf": [_ref("Readiness")],
                                "properties": {
                                    "status": {"const": "ready"},
                                    "checks": {"additionalProperties": {"const": "ok"}},
                                },
                            })},
                    "503": {"description": "Not ready: each failing check holds its error"
                                           " text.",
                            "content": _json({
                                "allOf": [_ref("Readiness")],
                                "properties": {"status": {"const": "not ready"}},
                            })},
                },
            },
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "tags": ["Operations"],
                "summary": "Prometheus metrics",
                "description": "The Prometheus text exposition format.",
                "security": [],
                "responses": {"200": {"description": "Metrics.",
                                      "content": {plain: {"schema": {"type": "string"}}}}},
            },
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "tags": ["Documentation"],
                "summary": "This OpenAPI 3.1 document",
                "security": [],
                "responses": {"200": {"description": "The document.",
                                      "content": _json({"type": "object",
                                                        "required": ["openapi", "paths"]})}},
            },
        },
        "/docs": {
            "get": {
                "operationId": "docs",
                "tags": ["Documentation"],
                "summary": "This document as an HTML page",
                "security": [],
                "responses": {"200": {"description": "The page.", "content": html}},
            },
        },
    }


SMS_CREATE_DOC = (
    "Queues an SMS. Without `repeat` it is sent once and carries no link. With `repeat` it"
    " is sent `repeat` times in all, `repeat_interval` minutes apart, with a tracked link"
    " appended; opening the link stops the repeats."
)
VOICE_CREATE_DOC = (
    "Queues a call that plays an uploaded sound file. Retries apply to busy, no-answer and"
    " calls that ended before the file played to the end."
)


@functools.lru_cache(maxsize=8)
def build_spec(settings: Settings) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    paths.update(_message_operations("sms", "SMS", "an SMS", "SmsRequest", "SmsMessage",
                                     "SmsMessageWithAttempts", SMS_CREATE_DOC))
    paths.update(_message_operations("voice", "Voice", "a voice message", "VoiceRequest",
                                     "VoiceMessage",
                                     "VoiceMessageWithAttempts", VOICE_CREATE_DOC))
    paths.update(_file_operations(settings))
    paths.update(_public_operations(settings))
    spec = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Amivono",
            "version": API_VERSION,
            "description":
                "A self-hosted SMS and voice-message gateway on Asterisk. Authenticate with"
                " `Authorization: Bearer <key>` (`amivono keys create ACCOUNT`). Every"
                " authenticated response carries X-RateLimit-Limit, -Remaining, -Used and"
                f" -Reset (default {settings.rate_limit_per_hour} requests an hour per"
                " account); past the limit the answer is 429 with Retry-After. Errors are"
                ' JSON: {"message": ...}, and for 422 {"message": "Validation Failed",'
                ' "errors": [{"resource", "field", "code", "message"}]}. A method a path'
                ' does not have is 405 {"message": "Method Not Allowed"} with an Allow'
                " header. Timestamps are ISO 8601 UTC to the second.",
            "license": {"name": "AGPL-3.0-or-later",
                        "identifier": "AGPL-3.0-or-later"},
        },
        "servers": [{"url": settings.public_base_url.rstrip("/")}],
        "security": [{"bearerAuth": []}],
        "tags": [
            {"name": "SMS messages"}, {"name": "Voice messages"}, {"name": "Sound files"},
            {"name": "Tracked link"}, {"name": "Operations"}, {"name": "Documentation"},
        ],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer",
                               "description": "An API key: amv_ followed by 43 characters."},
            },
            "schemas": _schemas(settings),
        },
    }
    # A deep copy through JSON: nothing shared between parts, nothing mutable cached.
    return json.loads(json.dumps(spec))


async def spec_json(request: Request) -> Response:
    return JSONResponse(build_spec(request.app.state.settings))


# --- the docs page -------------------------------------------------------

METHOD_ORDER = ("get", "head", "post", "put", "patch", "delete")

CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2327;background:#fafafa}
main{max-width:1000px;margin:0 auto;padding:1.5em}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ccd;padding-bottom:.2em;margin-top:2em}
section.op{background:#fff;border:1px solid #dde;border-radius:6px;padding:.6em 1em;
margin:1em 0}
h3{margin:.3em 0;font-family:ui-monospace,monospace;font-size:1.05em}
.m{display:inline-block;min-width:4.5em;padding:.1em .4em;border-radius:4px;color:#fff;
text-align:center;margin-right:.5em}
.get,.head{background:#2a6fb0}.post{background:#2e8b57}.put{background:#b7791f}
.delete{background:#b03a2e}
table{border-collapse:collapse;width:100%;margin:.4em 0}
th,td{border:1px solid #e2e2ea;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f1f1f6}code{font-family:ui-monospace,monospace;font-size:.92em}
.lock{font-size:.85em;color:#555}.s{font-family:ui-monospace,monospace;font-weight:bold}
ul.toc{columns:2;list-style:none;padding-left:0}ul.toc li{margin:.15em 0}
"""


def _text(text: str) -> str:
    """Escaped prose, with `code` spans as in the descriptions."""
    parts = escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _resolve(spec: dict[str, Any], schema: Schema) -> tuple[str | None, Schema]:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[1]
        return name, spec["components"]["schemas"][name]
    return None, schema


def _type_text(spec: dict[str, Any], schema: Schema) -> str:
    """One line of HTML: the type and every constraint of a schema."""
    name, resolved = _resolve(spec, schema)
    if name is not None:
        return f'<a href="#schema-{escape(name)}">{escape(name)}</a>'
    parts: list[str] = []
    for key in ("oneOf", "anyOf", "allOf"):
        if key in schema and "type" not in schema:
            joined = " | " if key != "allOf" else " &amp; "
            parts.append(joined.join(_type_text(spec, s) for s in schema[key]))
    kind = schema.get("type")
    if isinstance(kind, list):
        parts.append(" or ".join(escape(k) for k in kind))
    elif kind == "array":
        parts.append("array of " + _type_text(spec, schema.get("items", {})))
    elif kind == "object" and "properties" in schema:
        parts.append("object with " + ", ".join(
            f"<code>{escape(k)}</code>: {_type_text(spec, v)}"
            for k, v in schema["properties"].items()))
    elif kind:
        parts.append(escape(kind))
    facts = []
    for key in ("format", "pattern", "minimum", "maximum", "exclusiveMinimum", "minLength",
                "maxLength", "minItems", "default"):
        if key in schema:
            facts.append(f"{key} <code>{escape(json.dumps(schema[key], ensure_ascii=False))}"
                         "</code>")
    if "const" in schema:
        facts.append(f"always <code>{escape(json.dumps(schema['const']))}</code>")
    if "enum" in schema:
        facts.append("one of " + ", ".join(f"<code>{escape(json.dumps(v))}</code>"
                                           for v in schema["enum"]))
    if "not" in schema and "enum" in schema["not"]:
        facts.append("not " + ", ".join(f"<code>{escape(json.dumps(v))}</code>"
                                        for v in schema["not"]["enum"]))
    text = " ".join(parts) or "any"
    return text + (f" ({'; '.join(facts)})" if facts else "")


def _schema_block(spec: dict[str, Any], schema: Schema) -> str:
    """A schema as HTML: a link to a named one, or its fields."""
    name, resolved = _resolve(spec, schema)
    if name is not None:
        return f"<p>{_type_text(spec, schema)}</p>"
    if resolved.get("type") == "object" and "properties" in resolved:
        return _fields_table(spec, resolved)
    return f"<p>{_type_text(spec, resolved)}</p>"


def _fields_table(spec: dict[str, Any], schema: Schema) -> str:
    required = set(schema.get("required", []))
    rows = [
        f"<tr><td><code>{escape(field)}</code></td><td>{'yes' if field in required else ''}"
        f"</td><td>{_type_text(spec, sub)}</td>"
        f"<td>{_text(sub.get('description', ''))}</td></tr>"
        for field, sub in schema.get("properties", {}).items()
    ]
    extra = ""
    if schema.get("additionalProperties") is False:
        extra = "<p>No other fields are accepted.</p>"
    return ("<table><tr><th>field</th><th>required</th><th>type</th><th>description</th>"
            "</tr>" + "".join(rows) + "</table>" + extra)


def _content_html(spec: dict[str, Any], content: dict[str, Any]) -> str:
    out = []
    for media, body in content.items():
        out.append(f"<p><code>{escape(media)}</code></p>")
        if "schema" in body:
            out.append(_schema_block(spec, body["schema"]))
    return "".join(out)


def _operation_html(spec: dict[str, Any], path: str, method: str, op: dict[str, Any]) -> str:
    anchor = f"op-{op['operationId']}"
    secured = op.get("security", spec.get("security")) != []
    out = [f'<section class=op id="{escape(anchor)}">',
           f'<h3><span class="m {method}">{method.upper()}</span>{escape(path)}</h3>',
           f"<p><b>{_text(op.get('summary', ''))}</b>"
           + (" <span class=lock>(Bearer API key)</span>" if secured
              else " <span class=lock>(no authentication)</span>") + "</p>"]
    if op.get("description"):
        out.append(f"<p>{_text(op['description'])}</p>")
    params = op.get("parameters", [])
    if params:
        out.append("<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>required</th>"
                   "<th>type</th><th>description</th></tr>")
        for p in params:
            out.append(f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}"
                       f"</td><td>{'yes' if p.get('required') else ''}</td>"
                       f"<td>{_type_text(spec, p['schema'])}</td>"
                       f"<td>{_text(p.get('description', ''))}</td></tr>")
        out.append("</table>")
    body = op.get("requestBody")
    if body:
        out.append("<h4>Request body</h4>" + _content_html(spec, body["content"]))
    out.append("<h4>Responses</h4>")
    for status, response in op["responses"].items():
        out.append(f"<p><span class=s>{escape(status)}</span> "
                   f"{_text(response['description'])}</p>")
        headers = response.get("headers", {})
        if headers:
            items = ", ".join(
                f"<code>{escape(h)}</code>{'' if v.get('required') else ' (optional)'}"
                for h, v in headers.items())
            out.append(f"<p>Headers: {items}</p>")
        if response.get("content"):
            out.append(_content_html(spec, response["content"]))
    out.append("</section>")
    return "".join(out)


def render_docs(spec: dict[str, Any]) -> str:
    info = spec["info"]
    toc, sections = [], []
    by_tag: dict[str, list[str]] = {t["name"]: [] for t in spec.get("tags", [])}
    for path, item in spec["paths"].items():
        for method in METHOD_ORDER:
            op = item.get(method)
            if op is None:
                continue
            toc.append(f'<li><a href="#op-{escape(op["operationId"])}"><span class="m '
                       f'{method}">{method.upper()}</span><code>{escape(path)}</code></a></li>')
            html = _operation_html(spec, path, method, op)
            by_tag.setdefault(op.get("tags", ["Other"])[0], []).append(html)
    for tag, ops in by_tag.items():
        if ops:
            sections.append(f"<h2>{escape(tag)}</h2>" + "".join(ops))
    schemas = [
        f'<section class=op id="schema-{escape(name)}"><h3>{escape(name)}</h3>'
        + (f"<p>{_text(s['description'])}</p>" if s.get("description") else "")
        + (_fields_table(spec, s) if "properties" in s else f"<p>{_type_text(spec, s)}</p>")
        + "</section>"
        for name, s in spec["components"]["schemas"].items()
    ]
    server = spec["servers"][0]["url"] if spec.get("servers") else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(info['title'])} API {escape(info['version'])}</title>"
        f"<style>{CSS}</style></head><body><main>"
        f"<h1>{escape(info['title'])} API</h1>"
        f"<p>Version {escape(info['version'])}, OpenAPI {escape(spec['openapi'])}"
        f" (<a href=\"openapi.json\">openapi.json</a>). Server: <code>{escape(server)}"
        "</code></p>"
        f"<p>{_text(info.get('description', ''))}</p>"
        "<h2>Endpoints</h2><ul class=toc>" + "".join(toc) + "</ul>"
        + "".join(sections)
        + "<h2>Schemas</h2>" + "".join(schemas)
        + "</main></body></html>"
    )


@functools.lru_cache(maxsize=8)
def _docs_html(settings: Settings) -> str:
    return render_docs(build_spec(settings))


async def docs_page(request: Request) -> Response:
    return HTMLResponse(_docs_html(request.app.state.settings))
