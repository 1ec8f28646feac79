"""Voice messages as the API stores and shows them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg

from service.domain.file_names import NAME_SHAPE
from service.domain.json_schema import (
    E164,
    ID,
    MAYBE_TIMESTAMP,
    TIMESTAMP,
    URL,
    Fields,
    anchored,
    enum,
    nullable,
)
from service.domain.refusals import FieldError, validation_failed
from service.domain.request_fields import not_owned
from service.domain.statuses import FieldCode, VoiceAttemptOutcome, VoiceOutcome, VoiceStatus
from service.domain.timestamps import iso
from service.domain.voice_prompts import LANGUAGES
from service.domain.voice_requests import MAX_REPEAT, RESOURCE, VoiceRequest
from service.settings import Settings
from service.store import destination_guards, speech
from service.store.database import Executor, refused_as_batch
from service.store.queries import queries
from service.store.queue_signal import notify_cancel

PATH = "/messages/voice"

# The marks of a call that mark_calls writes (sql/voice_messages.sql): when it
# was answered, when its file began to play.
MARK_ANSWERED = "answered"
MARK_PLAYING = "playing"


def message_url(settings: Settings, message_id: int) -> str:
    return settings.public_url(f"{PATH}/{message_id}")


def refuse_speech(resource: str) -> Callable[[str, str], Exception]:
    """A missing or failing engine is the request's fault to fix: 422."""
    def refuse(field: str, message: str) -> Exception:
        return validation_failed([FieldError(resource, field, FieldCode.INVALID, message)])
    return refuse


def acknowledgement_speech(field: str, language: str, prompt_text: str | None,
                           prompt_is_file: bool) -> list[tuple[str, str, str]]:
    """(field, language, text) of the spoken prompt (none when it is an uploaded
    file) and of the confirmation."""
    words = LANGUAGES[language]
    prompt = [] if prompt_is_file else [(field, language, prompt_text or words.prompt)]
    return [*prompt, (field, language, words.confirmation)]


def speech_wanted(req: VoiceRequest) -> list[tuple[str, str, str]]:
    wanted = [] if req.text is None else [("text", req.language, req.text)]
    if req.acknowledge:
        wanted += acknowledgement_speech(
            "acknowledge_prompt", req.language, req.prompt.text if req.prompt else None,
            req.prompt is not None and req.prompt.file_name is not None)
    return wanted


async def prepare(req: VoiceRequest, settings: Settings) -> speech.Rendered:
    """The request's speech, rendered at create time (never at call time) and
    before create's transaction."""
    return await speech.render_all(speech_wanted(req), settings, refuse_speech(RESOURCE))


async def acknowledgement_stems(conn: Executor, rendered: speech.Rendered, language: str,
                                prompt_text: str | None, prompt_is_file: bool,
                                settings: Settings) -> tuple[str | None, str]:
    """The spoken prompt's stem (None when it is an uploaded file) and the
    confirmation's, as rendered by `prepare`."""
    words = LANGUAGES[language]
    prompt = None
    if not prompt_is_file:
        prompt = await speech.keep(conn, rendered, prompt_text or words.prompt, language,
                                   settings)
    return prompt, await speech.keep(conn, rendered, words.confirmation, language, settings)


async def create(conn: asyncpg.Connection, account_id: int, req: VoiceRequest,
                 settings: Settings, rendered: speech.Rendered | None = None,
                 ) -> dict[str, Any]:
    """Store the message; return it as the API shows it (no attempts yet).
    Refused when the account has no file of that name. `rendered` is
    `prepare(req)`, done before the transaction."""
    await destination_guards.check(conn, account_id, req.to_number, settings, RESOURCE)
    rendered = rendered or {}
    speech_stem = prompt_stem = confirm_stem = None
    if req.text is not None:
        speech_stem = await speech.keep(conn, rendered, req.text, req.language, settings)
    prompt_file = req.prompt.file_name if req.prompt else None
    prompt_text = req.prompt.text if req.prompt else None
    if req.acknowledge:
        prompt_stem, confirm_stem = await acknowledgement_stems(
            conn, rendered, req.language, prompt_text, prompt_file is not None, settings)
    checks = {"account_id": account_id, "from_number": req.from_number,
              "any_sender": settings.sender_policy == "any"}
    row = await queries.voice_messages.create(
        conn, **checks, to_number=req.to_number, file_name=req.file_name,
        retries=req.retries, retry_interval=req.retry_interval, text=req.text,
        speech_stem=speech_stem, language=req.language if (req.text or req.acknowledge)
        else None, acknowledge=req.acknowledge, prompt_file=prompt_file,
        prompt_text=prompt_text, prompt_stem=prompt_stem, confirm_stem=confirm_stem,
        repeat_total=req.repeat_total, repeat_interval=req.repeat_interval)
    if row is None:
        if not await queries.phone_numbers.owns(conn, **checks):
            raise validation_failed([not_owned(RESOURCE, req.from_number)])
        for field, name in (("file", req.file_name),
                            ("acknowledge_prompt.file", prompt_file)):
            if name is not None and await queries.sound_files.get(
                    conn, account_id=account_id, name=name) is None:
                raise validation_failed([FieldError(
                    RESOURCE, field, FieldCode.INVALID,
                    f"no uploaded file named {name!r}: PUT /files/{name} first")])
        raise RuntimeError("voice message not stored, for no known reason")
    return render(row, settings, [])


# What render writes, in its order; the OpenAPI schema is built from these, and
# tests/unit/test_rendered_fields.py fails when render writes anything else.
FIELDS: Fields = {
    "id": ID,
    "url": URL,
    "from": E164,
    "to": E164,
    "file": {"type": ["string", "null"], "pattern": anchored(NAME_SHAPE),
             "description": "The uploaded file played; null when `text` is spoken."},
    "text": {"type": ["string", "null"], "description": "The text spoken instead of a file."},
    "language": {"type": ["string", "null"],
                 "description": "The language of `text` and of the built-in prompt."},
    "sent_at": {**MAYBE_TIMESTAMP, "description": "When the answered call started"
                                                  " playing the file."},
    "created_at": TIMESTAMP,
    "updated_at": TIMESTAMP,
    "status": enum(VoiceStatus, description="queued, calling, scheduled (for a retry),"
                                            " then the outcome."),
    "answered_at": MAYBE_TIMESTAMP,
    "ended_at": MAYBE_TIMESTAMP,
    "duration": {"type": ["number", "null"], "minimum": 0,
                 "description": "Seconds from answer to hang-up, to 0.1 s."},
    "outcome": nullable(enum(VoiceOutcome,
                             description="null until the message is finished.")),
    "cause": {"type": ["integer", "null"], "description": "Q.850 cause code."},
    "cause_text": {"type": ["string", "null"]},
    "retries": {"type": "integer", "minimum": 0},
    "retry_interval": {"type": "integer", "minimum": 1, "description": "Minutes."},
    "attempts_made": {"type": "integer", "minimum": 0},
    "next_attempt_at": MAYBE_TIMESTAMP,
    "heard_at": {**MAYBE_TIMESTAMP, "description": "When the callee heard it again by"
                                                   " calling back."},
    "canceled_at": MAYBE_TIMESTAMP,
    "acknowledge": {"type": "boolean",
                    "description": "Whether the call asks the callee to press 1."},
    "acknowledge_prompt": {"type": ["object", "null"],
                           "description": "The prompt asked for: {\"file\": name} or "
                                          "{\"text\": words}; null: the built-in one.",
                           "properties": {"file": {"type": "string"},
                                          "text": {"type": "string"}}},
    "repeat": {"type": "integer", "minimum": 1, "maximum": MAX_REPEAT,
               "description": "Calls asked for in all (acknowledge: true), until one is"
                              " acknowledged."},
    "repeat_interval": {"type": ["integer", "null"], "minimum": 1,
                        "description": "Minutes between those calls; null without `repeat`."},
    "calls_made": {"type": "integer", "minimum": 0,
                   "description": "Calls placed so far, busy and no-answer included (an"
                                  " attempt our own Asterisk refused to place is not one)."},
    "acknowledged": {"type": "boolean", "description": "Whether the callee pressed 1."},
    "acknowledged_at": MAYBE_TIMESTAMP,
    "key": {"type": ["string", "null"],
            "description": "The latest key the callee pressed, in any call."},
    "escalated_from": {"type": ["integer", "null"], "minimum": 1,
                       "description": "The SMS whose `escalate` created this message."},
}
# Each of `attempts` (present when render is given them).
ATTEMPT_FIELDS: Fields = {
    "id": ID,
    "dispatcher": {"type": "string"},
    "gateway": {"type": ["string", "null"], "examples": ["node1", "default"],
                "description": "The gateway node (`amivono gateways list`) that carried the"
                               " call."},
    "started_at": TIMESTAMP,
    "answered_at": MAYBE_TIMESTAMP,
    "playback_started_at": MAYBE_TIMESTAMP,
    "finished_at": MAYBE_TIMESTAMP,
    "outcome": nullable(enum(VoiceAttemptOutcome,
                             description="null while the call is in progress.")),
    "cause": {"type": ["integer", "null"], "description": "Q.850 cause code."},
    "cause_text": {"type": ["string", "null"]},
    "detail": {"type": ["string", "null"]},
    "prompt_started_at": {**MAYBE_TIMESTAMP,
                          "description": "When the acknowledgement prompt began."},
    "keys": {"type": "string", "description": "Every key pressed in this call, in order."},
    "acknowledged_at": MAYBE_TIMESTAMP,
}


def render(row: asyncpg.Record, settings: Settings,
           attempts: list[asyncpg.Record] | None = None) -> dict[str, Any]:
    """The spec's fields first (`file` where the spec's copy says `message`), then ours."""
    out: dict[str, Any] = {
        "id": row["id"],
        "url": message_url(settings, row["id"]),
        "from": row["from_number"],
        "to": row["to_number"],
        "file": row["file_name"],
        "text": row["text"],
        "language": row["language"],
        "sent_at": iso(row["sent_at"]),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "status": row["status"],
        "answered_at": iso(row["answered_at"]),
        "ended_at": iso(row["ended_at"]),
        "duration": None if row["duration"] is None else round(row["duration"], 1),
        "outcome": row["outcome"] if row["finished_at"] is not None else None,
        "cause": row["cause_code"],
        "cause_text": row["cause_text"],
        "retries": row["retries"],
        "retry_interval": row["retry_interval"],
        "attempts_made": row["attempts_made"],
        "next_attempt_at": iso(row["next_attempt_at"]),
        "heard_at": iso(row["heard_at"]),
        "canceled_at": iso(row["canceled_at"]),
        "acknowledge": row["acknowledge"],
        "acknowledge_prompt": ({"file": row["prompt_file"]} if row["prompt_file"] else
                               {"text": row["prompt_text"]} if row["prompt_text"] else None),
        "repeat": row["repeat_total"],
        "repeat_interval": row["repeat_interval"],
        "calls_made": row["calls_made"],
        "acknowledged": row["acknowledged_at"] is not None,
        "acknowledged_at": iso(row["acknowledged_at"]),
        "key": row["last_key"],
        "escalated_from": row["escalated_from"],
    }
    if attempts is not None:
        out["attempts"] = [
            {
                "id": a["id"],
                "dispatcher": a["dispatcher"],
                "gateway": a["gateway"],
                "started_at": iso(a["started_at"]),
                "answered_at": iso(a["answered_at"]),
                "playback_started_at": iso(a["playback_started_at"]),
                "finished_at": iso(a["finished_at"]),
                "outcome": a["outcome"],
                "cause": a["cause_code"],
                "cause_text": a["cause_text"],
                "detail": a["detail"],
                "prompt_started_at": iso(a["prompt_started_at"]),
                "keys": a["keys"],
                "acknowledged_at": iso(a["acknowledged_at"]),
            }
            for a in attempts
        ]
    return out


async def cancel(conn: Executor, account_id: int, message_id: int) -> None:
    """Cancel the calls still to come; a call in flight is hung up by its
    dispatcher, woken by NOTIFY."""
    row = await queries.voice_messages.cancel(conn, id=message_id, account_id=account_id)
    if row is not None and row["lease_attempt_id"] is not None:
        await notify_cancel(conn, row["lease_attempt_id"])


async def mark_calls(pool: asyncpg.Pool, marks: list[tuple[int, str]]) -> None:
    """Many calls' (attempt_id, MARK_*) in one statement, so one commit;
    BatchRefused when PostgreSQL refuses it for another reason than an outage
    (then write them one by one, as mark_call)."""
    try:
        await queries.voice_messages.mark_calls(
            pool, attempt_ids=[m[0] for m in marks], marks=[m[1] for m in marks])
    except asyncpg.PostgresError as exc:
        raise refused_as_batch(exc) from exc


async def mark_call(pool: asyncpg.Pool, attempt_id: int, mark: str) -> None:
    """One call's mark on its own (a refusal raised as it is, as ever)."""
    await queries.voice_messages.mark_calls(pool, attempt_ids=[attempt_id], marks=[mark])


# What finish_calls records of one call: (attempt_id, outcome, cause_code,
# cause_text, detail, retryable, placed).
Finish = tuple[int, str, int | None, str | None, str, bool, bool]


async def finish_calls(pool: asyncpg.Pool, finishes: list[Finish], minute_seconds: float
                       ) -> None:
    """The outcomes of calls (one or many) in one statement, so one commit;
    BatchRefused when PostgreSQL refuses it for another reason than an outage
    (then record them one by one)."""
    columns = [list(c) for c in zip(*finishes, strict=True)]
    try:
        await queries.voice_messages.finish_calls(
            pool, attempt_ids=columns[0], outcomes=columns[1], cause_codes=columns[2],
            cause_texts=columns[3], details=columns[4], retryables=columns[5],
            placeds=columns[6], minute_seconds=minute_seconds)
    except asyncpg.PostgresError as exc:
        raise refused_as_batch(exc) from exc
