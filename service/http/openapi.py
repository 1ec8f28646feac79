"""OpenAPI 3.1 description of the API, served at /openapi.json.

The document is built here from the settings (the limits it states are the ones
the running API enforces) and describes every route in `app.create_app`;
`tests/test_openapi.py` checks that no route is missing and runs schemathesis
against the live API with it. The response bodies' schemas are the renderers'
own field declarations (`sms_messages.FIELDS`, ...) and the enums come from
`service.domain.statuses`, so nothing here restates them. `/docs` renders the
document as HTML (docs_page.py).
"""

from __future__ import annotations

import functools
import json
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.domain import (
    file_names,
    phone_numbers,
    sms_requests,
    sms_text,
    tracked_links,
    voice_prompts,
)
from service.domain.json_schema import URL, Schema, anchored, enum, object_of
from service.domain.statuses import FieldCode
from service.domain.voice_requests import MAX_REPEAT as MAX_VOICE_REPEAT
from service.domain.webhook_requests import EVENTS as WEBHOOK_EVENTS
from service.domain.webhook_requests import MAX_DESCRIPTION, MAX_URL
from service.http import file_routes, idempotency, json_io
from service.settings import Settings
from service.store import (
    account_numbers,
    inbound_messages,
    opt_outs,
    sms_messages,
    sound_files,
    voice_messages,
    webhooks,
)

OPENAPI_VERSION = "3.1.0"
API_VERSION = "0.1.0"

E164_PATTERN = anchored(phone_numbers.E164_PATTERN)
FILE_NAME_PATTERN = anchored(file_names.NAME_SHAPE)
LINK_TOKEN_PATTERN = anchored(tracked_links.TOKEN_SHAPE)
IDEMPOTENCY_KEY_PATTERN = r"^[\x20-\x7e]+$"  # printable ASCII


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


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


# What app.readyz puts in a check: the error's type name, never its text (which
# could carry a connection string).
CHECK_TEXT = "\"ok\", or the name of the error's type, like \"ConnectError\"."


def _webhook_request_properties() -> dict[str, Schema]:
    return {
        "url": {"type": "string", "format": "uri", "maxLength": MAX_URL,
                "description": "http or https; its host must resolve to a public address."},
        "events": {"type": "array", "uniqueItems": True,
                   "items": {"type": "string", "enum": list(WEBHOOK_EVENTS)},
                   "description": "Events to send; empty or absent: every event."},
        "description": {"type": "string", "maxLength": MAX_DESCRIPTION},
    }


def _audio_properties(prefix: str, language: bool = True) -> dict[str, Schema]:
    """`file` or `text` (and the language it is spoken in); null is the same as
    leaving one out."""
    out: dict[str, Schema] = {
        "file": {**_file_name(f"Name of a sound file this account uploaded with PUT"
                              f" /files/{{name}} (else 422). Exactly one of {prefix}file and"
                              f" {prefix}text."), "type": ["string", "null"]},
        "text": {"type": ["string", "null"], "minLength": 1,
                 "maxLength": voice_prompts.MAX_TEXT,
                 "description": "Spoken instead of a file: rendered to speech once, when"
                                " the request is made (422 if this server has no speech"
                                " engine). Not only white space, no NUL."},
    }
    if language:
        out["language"] = {"type": ["string", "null"], "enum": [*voice_prompts.LANGUAGES, None],
                           "description": "The language of the text and of the built-in"
                                          " prompt and confirmation. Default en."}
    return out


def _given(name: str, schema: Schema | None = None) -> Schema:
    """`name` is there and not null (JSON Schema's `required` takes null as given)."""
    return {"required": [name], "properties": {name: schema or {"not": {"type": "null"}}}}


def _absent(name: str) -> Schema:
    return {"not": _given(name)}


# Exactly one of file and text, each not null.
ONE_AUDIO: Schema = {"oneOf": [{**_given("file"), **{"not": _given("text")}},
                               {**_given("text"), **{"not": _given("file")}}]}


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
                "resource": {"type": "string",
                             "enum": ["Sms", "Voice", "File", "Inbound", "OptOut",
                                      "Webhook"],
                             "description": "The resource the request was about."},
                "field": {"type": "string", "description":
                          "The field, query parameter or header at fault; '(body)' when the"
                          " body is not a JSON object."},
                "code": enum(FieldCode),
                "message": {"type": "string", "description": "A readable explanation."},
            },
        },
        "LimitError": {
            "type": "object",
            "description": "429: over the account's requests per hour (message only), or"
                           " over the hourly cap per destination (with the field `to`,"
                           " code `destination_cap`).",
            "required": ["message"],
            "additionalProperties": False,
            "properties": {
                "message": {"type": "string", "description": "What went wrong, with the"
                            " limit."},
                "errors": {"type": "array", "minItems": 1, "items": _ref("FieldError")},
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
                "stop_on_reply": {
                    "type": ["boolean", "null"],
                    "description": "Whether an SMS from `to` to `from` ends the repeats"
                                   " (status `replied`). Default true; null is the same as"
                                   " leaving it out."},
                "escalate": {
                    "type": ["object", "null"],
                    "description":
                        "After `after` sends with no click and no reply, a voice message"
                        " with acknowledge: true to `to` plays `file` or speaks `text`"
                        " (one repeat_interval after the last of those sends; at once"
                        " without repeat). Linked both ways (`escalated_to`,"
                        " `escalated_from`): a click, a reply or a cancel of the SMS ends"
                        " the call; its acknowledgement ends the SMS (status"
                        " `acknowledged`).",
                    "required": ["after"],
                    "additionalProperties": False,
                    "properties": {
                        "after": {"type": "integer", "minimum": 1,
                                  "maximum": settings.max_repeat,
                                  "description": "Sends first: 1 to `repeat` (1 without)."},
                        **_audio_properties("escalate."),
                    },
                    **ONE_AUDIO,
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
        "SmsAttempt": object_of(sms_messages.ATTEMPT_FIELDS),
        "SmsMessage": object_of(sms_messages.FIELDS),
        "SmsMessageWithAttempts": object_of({
            **sms_messages.FIELDS,
            "attempts": {"type": "array", "items": _ref("SmsAttempt"),
                         "description": "Every send attempt, oldest first."},
        }),
        "VoiceRequest": {
            "type": "object",
            "required": ["from", "to"],
            "additionalProperties": False,
            "allOf": [
                ONE_AUDIO,
                # repeat and acknowledge_prompt need acknowledge: true; repeat_interval
                # needs repeat; retries and retry_interval do not go with repeat.
                {"anyOf": [_absent("repeat"), _given("acknowledge", {"const": True})]},
                {"anyOf": [_absent("acknowledge_prompt"),
                           _given("acknowledge", {"const": True})]},
                {"anyOf": [_absent("repeat_interval"), _given("repeat")]},
                {"anyOf": [_absent("repeat"),
                           {"allOf": [_absent("retries"), _absent("retry_interval")]}]},
            ],
            "properties": {
                "from": _e164("Caller id."),
                "to": _e164("Number to call."),
                **_audio_properties(""),
                "acknowledge": {
                    "type": ["boolean", "null"],
                    "description":
                        "Ask the callee to press 1 after the message (a prompt, then"
                        " AMIVONO_ACK_SECONDS of listening; keys count from the start of"
                        " the message). 1: status `acknowledged`, a confirmation plays,"
                        " the call ends. Another key: the prompt plays once more. No key:"
                        " the call ends `completed`, not acknowledged. Default false."},
                "acknowledge_prompt": {
                    "type": ["object", "null"],
                    "description": "The prompt instead of the built-in one (\"Press 1 to"
                                   " confirm that you have received this message\", in"
                                   " `language`): an uploaded file or text. Only with"
                                   " acknowledge: true.",
                    "additionalProperties": False,
                    "properties": _audio_properties("acknowledge_prompt.", language=False),
                    **ONE_AUDIO,
                },
                "repeat": {
                    "type": ["integer", "null"], "minimum": 1, "maximum": MAX_VOICE_REPEAT,
                    "description": "Calls in all, until one is acknowledged; busy and"
                                   " no-answer count. Only with acknowledge: true (else 422),"
                                   " and not with retries."},
                "repeat_interval": {
                    "type": ["integer", "null"], "minimum": 1,
                    "maximum": settings.max_repeat_interval,
                    "description": "Minutes from the end of one of those calls to the next."
                                   " Default 5; only with `repeat`."},
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
        "VoiceAttempt": object_of(voice_messages.ATTEMPT_FIELDS),
        "VoiceMessage": object_of(voice_messages.FIELDS),
        "VoiceMessageWithAttempts": object_of({
            **voice_messages.FIELDS,
            "attempts": {"type": "array", "items": _ref("VoiceAttempt"),
                         "description": "Every call attempt, oldest first."},
        }),
        "SoundFile": object_of(file_routes.fields(settings)),
        "PhoneNumber": object_of(account_numbers.FIELDS),
        "OptOut": object_of(opt_outs.FIELDS),
        "InboundMessage": object_of(inbound_messages.FIELDS),
        "Webhook": object_of(webhooks.FIELDS),
        "WebhookCreated": object_of({
            **webhooks.FIELDS,
            "secret": {"type": "string", "pattern": "^whsec_[A-Za-z0-9+/=]{32,}$",
                       "description": "The signing secret (Standard Webhooks); shown only"
                                      " here."}}),
        "WebhookDelivery": object_of(webhooks.DELIVERY_FIELDS),
        "WebhookRequest": {
            "type": "object", "required": ["url"], "additionalProperties": False,
            "properties": _webhook_request_properties(),
        },
        "WebhookPatch": {
            "type": "object", "additionalProperties": False,
            "properties": {**_webhook_request_properties(),
                           "enabled": {"type": "boolean",
                                       "description": "false stops deliveries; true starts"
                                                      " them again."}},
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
                        "postgres": {"type": "string", "description": CHECK_TEXT},
                        "asterisk": {"type": "string", "description": CHECK_TEXT},
                    },
                },
            },
        },
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
INVALID_JSON = _error("The body is not JSON (or not UTF-8 / valid Unicode), or an object in"
                      " it repeats a key.")
UNSUPPORTED_JSON = _error(
    "The Content-Type is not JSON in UTF-8: application/json or application/*+json, with"
    " no parameter but charset=utf-8 (no Content-Type at all is read as JSON).")
RETRY_AFTER: Schema = {"required": True, "schema": {"type": "integer", "minimum": 1},
                       "description": "Seconds to wait before trying again."}
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
                    "415": UNSUPPORTED_JSON,
                    "422": _validation(
                        "A field is missing or wrong, an unknown field was sent, the"
                        f" {idempotency.HEADER} was used with another body, or the"
                        " destination guards refuse `to` (code destination_not_allowed:"
                        " a premium-rate, shared-cost, satellite or unknown-type number, or"
                        " a country the account may not send to)."),
                    "429": _error(
                        "Over the account's requests per hour, or over the cap of messages"
                        " per hour from the account to this `to` (code destination_cap).",
                        schema=_ref("LimitError"), headers={"Retry-After": RETRY_AFTER}),
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


def _inbound_operations() -> dict[str, dict[str, Any]]:
    tag = "Two-way SMS"
    noun = "an inbound SMS"
    return {
        "/messages/inbound": {"get": {
            "operationId": "list_inbound", "tags": [tag],
            "summary": "List SMS sent to the account's numbers, newest first",
            "parameters": _page_params(),
            "responses": {
                "200": _ok("A page of inbound SMS.",
                           {"type": "array", "items": _ref("InboundMessage")},
                           headers={"Link": LINK_HEADER}),
                **_auth_errors(),
                "422": _validation("per_page or before is not an integer in range."),
            },
        }},
        "/messages/inbound/{message_id}": {"get": {
            "operationId": "get_inbound", "tags": [tag],
            "summary": "Get an inbound SMS",
            "parameters": [_message_id(noun)],
            "responses": {"200": _ok("The inbound SMS.", _ref("InboundMessage")),
                          **_auth_errors(), "404": NOT_FOUND},
        }},
        "/numbers": {"get": {
            "operationId": "list_numbers", "tags": [tag],
            "summary": "The account's numbers (senders it may use; where its SMS arrive)",
            "description": "Numbers are given to accounts by the operator"
                           " (`amivono numbers add ACCOUNT NUMBER`).",
            "responses": {"200": _ok("Every number of the account, in order.",
                                     {"type": "array", "items": _ref("PhoneNumber")}),
                          **_auth_errors()},
        }},
        "/opt-outs": {"get": {
            "operationId": "list_opt_outs", "tags": [tag],
            "summary": "Phones that sent STOP to the account, by phone",
            "parameters": [
                _page_params()[0],
                {"name": "after", "in": "query", "required": False,
                 "description": "Only phones after this one (keyset pagination: take it"
                                " from the `next` Link).",
                 "schema": _e164("A phone number.")},
            ],
            "responses": {
                "200": _ok("A page of opt-outs.", {"type": "array", "items": _ref("OptOut")},
                           headers={"Link": LINK_HEADER}),
                **_auth_errors(),
                "422": _validation("per_page or after is not valid."),
            },
        }},
    }


def _webhook_operations() -> dict[str, dict[str, Any]]:
    tag = "Webhooks"
    endpoint_id = {"name": "endpoint_id", "in": "path", "required": True,
                   "description": "The webhook endpoint's id.",
                   "schema": {"type": "integer", "minimum": 1, "maximum": json_io.BIGINT_MAX}}
    delivery_id = {**endpoint_id, "name": "delivery_id", "description": "The delivery's id."}
    one = _ok("The endpoint.", _ref("Webhook"))
    invalid = _validation("A field is missing or wrong, or the URL's host is not a public"
                          " address (loopback, private, link-local, multicast, metadata).")
    return {
        "/webhooks": {
            "post": {
                "operationId": "create_webhook", "tags": [tag],
                "summary": "Add a webhook endpoint",
                "description": "Events are POSTed to the URL in the Standard Webhooks format,"
                               " signed with the `secret`, which only this answer shows.",
                "requestBody": {"required": True, "content": _json(_ref("WebhookRequest"))},
                "responses": {
                    "201": _ok("Created.", _ref("WebhookCreated"),
                               {"Location": LOCATION_HEADER}),
                    "400": INVALID_JSON, **_auth_errors(), "413": TOO_LARGE_JSON,
                    "415": UNSUPPORTED_JSON, "422": invalid,
                },
            },
            "get": {
                "operationId": "list_webhooks", "tags": [tag],
                "summary": "The account's webhook endpoints",
                "responses": {"200": _ok("Every endpoint, oldest first.",
                                         {"type": "array", "items": _ref("Webhook")}),
                              **_auth_errors()},
            },
        },
        "/webhooks/{endpoint_id}": {
            "get": {"operationId": "get_webhook", "tags": [tag], "summary": "Get an endpoint",
                    "parameters": [endpoint_id],
                    "responses": {"200": one, **_auth_errors(), "404": NOT_FOUND}},
            "patch": {
                "operationId": "update_webhook", "tags": [tag],
                "summary": "Change an endpoint's url, events, description or enabled",
                "parameters": [endpoint_id],
                "requestBody": {"required": True, "content": _json(_ref("WebhookPatch"))},
                "responses": {"200": one, "400": INVALID_JSON, **_auth_errors(),
                              "404": NOT_FOUND, "413": TOO_LARGE_JSON,
                              "415": UNSUPPORTED_JSON, "422": invalid},
            },
            "delete": {
                "operationId": "delete_webhook", "tags": [tag], "summary": "Remove an endpoint",
                "parameters": [endpoint_id],
                "responses": {"204": {"description": "Removed, with its deliveries.",
                                      "headers": _rate_limit_headers(True)},
                              **_auth_errors(), "404": NOT_FOUND},
            },
        },
        "/webhooks/{endpoint_id}/test": {"post": {
            "operationId": "test_webhook", "tags": [tag],
            "summary": "Send a webhook.test event to the endpoint",
            "parameters": [endpoint_id],
            "responses": {"202": _ok("Queued.", _ref("WebhookDelivery")), **_auth_errors(),
                          "404": NOT_FOUND},
        }},
        "/webhooks/{endpoint_id}/deliveries": {"get": {
            "operationId": "list_webhook_deliveries", "tags": [tag],
            "summary": "The endpoint's deliveries, newest first",
            "parameters": [endpoint_id, *_page_params()],
            "responses": {
                "200": _ok("A page of deliveries.",
                           {"type": "array", "items": _ref("WebhookDelivery")},
                           headers={"Link": LINK_HEADER}),
                **_auth_errors(), "404": NOT_FOUND,
                "422": _validation("per_page or before is not an integer in range."),
            },
        }},
        "/webhooks/{endpoint_id}/deliveries/{delivery_id}/retry": {"post": {
            "operationId": "retry_webhook_delivery", "tags": [tag],
            "summary": "Send a finished delivery again (the same webhook-id), at once",
            "parameters": [endpoint_id, delivery_id],
            "responses": {"202": _ok("Queued.", _ref("WebhookDelivery")), **_auth_errors(),
                          "404": NOT_FOUND,
                          "409": _error("The delivery is still pending (on its schedule).")},
        }},
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
                    "The body is the audio file itself (WAV, MP3, OGG/Vorbis, Opus, FLAC);"
                    " the Content-Type is not relied on. It is decoded once, in blocks,"
                    " mixed to mono and stored as 8 kHz u-law and A-law and"
                    f" 16 kHz WAV. At most {settings.max_upload_bytes} bytes,"
                    f" {sound_files.MIN_SECONDS} to {settings.max_sound_seconds:g} seconds"
                    f" of audio, at most {settings.max_sound_rate} Hz and"
                    f" {settings.max_sound_channels} channels (read from the header before"
                    " decoding). At most"
                    f" {settings.max_concurrent_uploads} uploads at once per API process.",
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
                        " shorter or longer than allowed, a sample rate or channel count"
                        " over the limits, no declared length (a plain message).",
                        schema={"oneOf": [_ref("ValidationError"), _ref("Error")]}),
                    "503": _error("Too many uploads in progress in this API process.",
                                  headers={"Retry-After": RETRY_AFTER}),
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
                    "503": {"description": "Not ready: each failing check holds the name"
                                           " of its error's type.",
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
    paths.update(_inbound_operations())
    paths.update(_webhook_operations())
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
            {"name": "SMS messages"}, {"name": "Voice messages"}, {"name": "Two-way SMS"},
            {"name": "Webhooks"}, {"name": "Sound files"},
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
    copied: dict[str, Any] = json.loads(json.dumps(spec))
    return copied


async def spec_json(request: Request) -> Response:
    return JSONResponse(build_spec(request.app.state.settings))
