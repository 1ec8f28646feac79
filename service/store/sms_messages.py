"""SMS messages as the API stores and shows them."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from service.domain import sms_text
from service.domain.json_schema import (
    E164,
    ID,
    MAYBE_TIMESTAMP,
    TIMESTAMP,
    URL,
    Fields,
    enum,
    nullable,
)
from service.domain.refusals import FieldError, Refused, validation_failed
from service.domain.request_fields import not_owned
from service.domain.sms_requests import RESOURCE, SmsRequest
from service.domain.statuses import (
    SMS_ACTIVE,
    FieldCode,
    SmsAttemptOutcome,
    SmsDeliveryOutcome,
    SmsStatus,
    values,
)
from service.domain.timestamps import iso
from service.domain.tracked_links import link_for, new_token
from service.settings import Settings
from service.store import destination_guards, idempotency_keys, speech, voice_messages
from service.store.database import BatchRefused, Executor, refused_as_batch
from service.store.idempotency_keys import Reservation
from service.store.queries import queries
from service.store.write_batches import WriteBatch

log = logging.getLogger(__name__)

PATH = "/messages/sms"


def message_url(settings: Settings, message_id: int) -> str:
    return settings.public_url(f"{PATH}/{message_id}")


async def create(
    conn: Executor, account_id: int, req: SmsRequest, settings: Settings,
    rendered: speech.Rendered | None = None,
    *, ignore_opt_out: bool = False, any_sender: bool = False,
) -> dict[str, Any]:
    """Store the message; return it as the API shows it (no attempts yet).
    Refused when `from` is not the account's (under the `owned` sender
    policy) or `to` opted out of the account's SMS."""
    if not ignore_opt_out:  # not for the gateway's own answer to STOP/HELP
        await destination_guards.check(conn, account_id, req.to_number, settings, RESOURCE)
    row = _stored(account_id, req, settings, any_sender)
    escalate = await _escalation(conn, account_id, req, settings, rendered or {})
    created = await queries.sms_messages.create(
        conn, **row, ignore_opt_out=ignore_opt_out, escalate=escalate)
    if created is None:
        raise await _refused(conn, account_id, req, row["any_sender"])
    return render(created, settings, [])


def _stored(account_id: int, req: SmsRequest, settings: Settings,
            any_sender: bool = False) -> dict[str, Any]:
    """The new row's columns (and the sender check's switch), as `create`
    and `create_many` take them."""
    token = new_token() if req.tracked else None
    body = f"{req.text} {link_for(settings.link_base_url, token)}" if token else req.text
    measured = sms_text.measure(body)
    return {"account_id": account_id, "from_number": req.from_number,
            "to_number": req.to_number, "text": req.text, "body": body,
            "encoding": measured.encoding, "segments": measured.segments,
            "repeat_total": req.repeat_total, "repeat_interval": req.repeat_interval,
            "link_token": token, "stop_on_reply": req.stop_on_reply,
            "any_sender": any_sender or settings.sender_policy == "any"}


async def _refused(conn: Executor, account_id: int, req: SmsRequest,
                   any_sender: bool) -> Refused:
    """Why `create` made no row: the sender is not the account's, or the
    phone opted out."""
    return _refusal(req, await queries.phone_numbers.owns(
        conn, account_id=account_id, from_number=req.from_number, any_sender=any_sender))


def _refusal(req: SmsRequest, owned: bool) -> Refused:
    """`_refused`, knowing whether the sender is the account's."""
    if not owned:
        return validation_failed([not_owned(RESOURCE, req.from_number)])
    return validation_failed([FieldError(
        RESOURCE, "to", FieldCode.OPTED_OUT,
        f"{req.to_number} opted out of this account's SMS (it sent STOP); "
        "it opts back in by sending START")])


# The columns of create_many, each an array over the batch (its SQL's names).
_MANY = {"account_id": "account_ids", "from_number": "from_numbers",
         "to_number": "to_numbers", "text": "texts", "body": "bodies",
         "encoding": "encodings", "segments": "segments", "repeat_total": "repeat_totals",
         "repeat_interval": "repeat_intervals", "link_token": "link_tokens",
         "stop_on_reply": "stop_on_replies", "any_sender": "any_senders"}

Batched = tuple[asyncpg.Pool, int, SmsRequest, Settings, Reservation | None]


def batched(req: SmsRequest) -> Callable[..., Awaitable[dict[str, Any]]] | None:
    """create_batched, for what it can store: no escalation (its speech and
    file checks write and refuse in ways one shared statement cannot)."""
    return create_batched if req.escalate is None else None


async def create_batched(pool: asyncpg.Pool, account_id: int, req: SmsRequest,
                         settings: Settings,
                         reservation: Reservation | None = None) -> dict[str, Any]:
    """`create` in its own committed transaction, with the response stored
    into the request's Idempotency-Key `reservation` if it has one. Requests
    that come while the previous batch is being written are stored together
    (one transaction, one statement each for their destination checks, their
    rows and their keys' responses, one commit), each answered once the
    commit is done, or refused on its own as `create` refuses it."""
    result: dict[str, Any] = await _creates.add(
        (pool, account_id, req, settings, reservation))
    return result


async def _create_many(batch: list[Batched]) -> list[dict[str, Any] | BaseException]:
    pool, settings = batch[0][0], batch[0][3]  # one API process: one pool, one settings
    try:
        return await _create_together(pool, batch, settings)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, BatchRefused) as exc:
        refused = refused_as_batch(exc)
        if not isinstance(refused, BatchRefused):
            raise
        log.warning("storing %d SMS together failed (%s): one by one", len(batch), refused)
    # Each on its own, as if never batched: a bad one fails alone.
    return list(await asyncio.gather(*(_create_alone(pool, a, req, s, reservation)
                                       for _, a, req, s, reservation in batch),
                                     return_exceptions=True))


async def _create_alone(pool: asyncpg.Pool, account_id: int, req: SmsRequest,
                        settings: Settings, reservation: Reservation | None) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        out = await create(conn, account_id, req, settings)
        if reservation is not None:
            await idempotency_keys.store_created(conn, reservation, out, out["url"])
        return out


async def _create_together(pool: asyncpg.Pool, batch: list[Batched],
                           settings: Settings) -> list[dict[str, Any] | BaseException]:
    out: list[dict[str, Any] | BaseException | None] = []  # None: made below
    columns: dict[str, list[Any]] = {name: [] for name in ("places", *_MANY.values())}
    any_sender = settings.sender_policy == "any"
    async with pool.acquire() as conn, conn.transaction():
        checks = await destination_guards.check_many(
            conn, [(account_id, req.to_number, req.from_number, any_sender)
                   for _, account_id, req, *_ in batch], settings, RESOURCE)
        for place, ((_, account_id, req, *_), checked) in enumerate(
                zip(batch, checks, strict=True)):
            # One that makes no row is refused here: it took no place under
            # the cap, so create_many must not make it (even if its sender
            # became the account's meanwhile).
            refused = checked.refused or (
                None if checked.makes_row else _refusal(req, checked.owned))
            out.append(refused)
            if refused is None:
                columns["places"].append(place)
                for column, value in _stored(account_id, req, settings).items():
                    columns[_MANY[column]].append(value)
        rows = {r["place"]: r for r in await queries.sms_messages.create_many(conn, **columns)}
        keyed: list[tuple[Reservation, dict[str, Any]]] = []
        for place, (_, account_id, req, _, reservation) in enumerate(batch):
            if out[place] is not None:
                continue
            row = rows.get(place)
            if row is None:
                out[place] = await _refused(conn, account_id, req, any_sender)
                continue
            out[place] = made = render(row, settings, [])
            if reservation is not None:
                keyed.append((reservation, made))
        if keyed and not await idempotency_keys.store_created_many(conn, keyed):
            # A key taken over by a later request: its message must not be
            # made. Rare; one by one, that request alone is refused.
            raise BatchRefused("an Idempotency-Key was taken over")
    return [r for r in out if r is not None]


_creates: WriteBatch[Batched, dict[str, Any]] = WriteBatch(_create_many)


async def prepare(req: SmsRequest, settings: Settings) -> speech.Rendered:
    """The escalation's speech, rendered now, before create's transaction (the
    call is made by the database's trigger, with nothing to render)."""
    e = req.escalate
    if e is None:
        return {}
    wanted = [] if e.audio.text is None else [("escalate.text", e.language, e.audio.text)]
    wanted += voice_messages.acknowledgement_speech("escalate.language", e.language, None,
                                                    False)
    return await speech.render_all(wanted, settings, voice_messages.refuse_speech(RESOURCE))


async def _escalation(conn: Executor, account_id: int, req: SmsRequest,
                      settings: Settings, rendered: speech.Rendered) -> str | None:
    """`escalate` as stored: the voice message to create, with its speech."""
    e = req.escalate
    if e is None:
        return None
    speech_stem = None
    if e.audio.text is not None:
        speech_stem = await speech.keep(conn, rendered, e.audio.text, e.language, settings)
    elif e.audio.file_name is not None and await queries.sound_files.get(
            conn, account_id=account_id, name=e.audio.file_name) is None:
        raise validation_failed([FieldError(
            RESOURCE, "escalate.file", FieldCode.INVALID,
            f"no uploaded file named {e.audio.file_name!r}: PUT /files/{e.audio.file_name}"
            " first")])
    prompt_stem, confirm_stem = await voice_messages.acknowledgement_stems(
        conn, rendered, e.language, None, False, settings)
    return json.dumps({
        "after": e.after, "file": e.audio.file_name, "text": e.audio.text,
        "language": e.language, "speech_stem": speech_stem, "prompt_stem": prompt_stem,
        "confirm_stem": confirm_stem,
        # One repeat_interval after the last send: time to click it.
        "wait_seconds": (req.repeat_interval or 0) * settings.minute_seconds})


def _escalate_view(stored: str | None) -> dict[str, Any] | None:
    if stored is None:
        return None
    e = json.loads(stored)
    return {"after": e["after"], "file": e["file"], "text": e["text"],
            "language": e["language"]}


# What render writes, in its order; the OpenAPI schema is built from these, and
# tests/unit/test_rendered_fields.py fails when render writes anything else.
FIELDS: Fields = {
    "id": ID,
    "url": URL,
    "from": E164,
    "to": E164,
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
    "status": enum(SmsStatus),
    "sent_count": {"type": "integer", "minimum": 0},
    "next_send_at": MAYBE_TIMESTAMP,
    "clicked_at": MAYBE_TIMESTAMP,
    "canceled_at": MAYBE_TIMESTAMP,
    "stop_on_reply": {"type": "boolean",
                      "description": "Whether a reply from the phone ends the repeats."},
    "replied_at": MAYBE_TIMESTAMP,
    "reply_id": {"type": ["integer", "null"], "minimum": 1,
                 "description": "The inbound message that ended the repeats "
                                "(GET /messages/inbound/<id>)."},
    "opted_out_at": MAYBE_TIMESTAMP,
    "delivered_count": {"type": "integer", "minimum": 0,
                        "description": "Sends the carrier reported delivered."},
    "delivered_at": {**MAYBE_TIMESTAMP,
                     "description": "When the latest delivery report came."},
    "encoding": {"type": "string", "enum": [sms_text.GSM7, sms_text.UCS2]},
    "segments": {"type": "integer", "minimum": 1},
    "escalate": {"type": ["object", "null"],
                 "description": "After `after` sends with no click and no reply, a voice "
                                "message with acknowledge: true plays `file` or `text`.",
                 "properties": {"after": {"type": "integer", "minimum": 1},
                                "file": {"type": ["string", "null"]},
                                "text": {"type": ["string", "null"]},
                                "language": {"type": "string"}}},
    "escalated_to": {"type": ["integer", "null"], "minimum": 1,
                     "description": "The voice message the escalation created "
                                    "(GET /messages/voice/<id>)."},
    "acknowledged_at": {**MAYBE_TIMESTAMP,
                        "description": "When that voice message was acknowledged: no more"
                                       " sends."},
}
# Each of `attempts` (present when render is given them).
ATTEMPT_FIELDS: Fields = {
    "id": ID,
    "send_number": {"type": "integer", "minimum": 1,
                    "description": "Which of the `repeat` sends this was."},
    "dispatcher": {"type": "string"},
    "transport": {"type": "string", "examples": ["ari-pjsip", "dongle-ami"]},
    "gateway": {"type": ["string", "null"], "examples": ["node1", "default"],
                "description": "The gateway node (`amivono gateways list`) that carried the"
                               " send; null while in progress, when no node took it, or"
                               " for another transport than ari-pjsip."},
    "started_at": TIMESTAMP,
    "finished_at": MAYBE_TIMESTAMP,
    "outcome": nullable({"type": "string",
                         "enum": values(SmsAttemptOutcome) + values(SmsDeliveryOutcome),
                         "description": "sent: handed to the trunk, no report yet; "
                                        "delivered/undelivered: the carrier's report; "
                                        "expired: no report within the DLR timeout; unknown:"
                                        " the dispatcher lost its lease, or its gateway node"
                                        " went away, mid-send, so it may have been sent;"
                                        " null while in progress."}),
    "detail": {"type": ["string", "null"]},
    "error": {"type": ["string", "null"],
              "description": "The carrier's error code from its report (err:)."},
    "reported_at": MAYBE_TIMESTAMP,
}


def attempt_outcome(attempt: Any, settings: Settings) -> str | None:
    """The carrier's report over the attempt's own outcome, or `expired` for
    a send it never reported on within the DLR timeout."""
    outcome: str | None = attempt["outcome"]
    if attempt["report_stat"] is not None:
        return (SmsDeliveryOutcome.DELIVERED if attempt["delivered"]
                else SmsDeliveryOutcome.UNDELIVERED)
    finished = attempt["finished_at"]
    if (outcome == SmsAttemptOutcome.SENT and finished is not None
            and datetime.now(UTC) - finished > timedelta(seconds=settings.dlr_timeout)):
        return SmsDeliveryOutcome.EXPIRED
    return outcome


def render(
    row: asyncpg.Record, settings: Settings, attempts: list[asyncpg.Record] | None = None
) -> dict[str, Any]:
    """The JSON a client sees: the spec's fields first, then ours."""
    to_come = 0
    if row["status"] in SMS_ACTIVE:
        # Sends still to come after the first: 10 asked is 9, as in the spec.
        to_come = row["repeat_total"] - max(row["sent_count"], 1)
    out: dict[str, Any] = {
        "id": row["id"],
        "url": message_url(settings, row["id"]),
        "from": row["from_number"],
        "to": row["to_number"],
        "message": row["body"],
        "last_sent_at": iso(row["last_sent_at"]),
        "repeat": to_come,
        "repeat_interval": row["repeat_interval"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "status": row["status"],
        "sent_count": row["sent_count"],
        "next_send_at": iso(row["next_send_at"]),
        "clicked_at": iso(row["clicked_at"]),
        "canceled_at": iso(row["canceled_at"]),
        "stop_on_reply": row["stop_on_reply"],
        "replied_at": iso(row["replied_at"]),
        "reply_id": row["reply_id"],
        "opted_out_at": iso(row["opted_out_at"]),
        "delivered_count": row["delivered_count"],
        "delivered_at": iso(row["delivered_at"]),
        "encoding": row["encoding"],
        "segments": row["segments"],
        "escalate": _escalate_view(row["escalate"]),
        "escalated_to": row["escalated_to"],
        "acknowledged_at": iso(row["acknowledged_at"]),
    }
    if attempts is not None:
        out["attempts"] = [
            {
                "id": a["id"],
                "send_number": a["send_number"],
                "dispatcher": a["dispatcher"],
                "transport": a["transport"],
                "gateway": a["gateway"],
                "started_at": iso(a["started_at"]),
                "finished_at": iso(a["finished_at"]),
                "outcome": attempt_outcome(a, settings),
                "detail": a["detail"],
                "error": a["report_error"],
                "reported_at": iso(a["reported_at"]),
            }
            for a in attempts
        ]
    return out


async def finish_send(pool: asyncpg.Pool, attempt_id: int, outcome: str, detail: str,
                      gateway: str | None, **rules: Any) -> None:
    """Record an attempt's outcome and schedule what comes next (finish_sends
    in sql/sms_messages.sql, for one), serialized with its delivery report."""
    async with pool.acquire() as conn, conn.transaction():
        await queries.sms_messages.lock_for_attempt(conn, attempt_id=attempt_id)
        await queries.sms_messages.finish_sends(
            conn, attempt_ids=[attempt_id], outcomes=[outcome], details=[detail],
            gateways=[gateway], **rules)


async def finish_sends(pool: asyncpg.Pool, outcomes: list[tuple[int, str, str, str | None]],
                       **params: Any) -> None:
    """finish_send for many (attempt_id, outcome, detail, gateway) in one
    transaction of three statements; BatchRefused when PostgreSQL refuses it
    for another reason than an outage (then record them one by one)."""
    ids = [o[0] for o in outcomes]
    try:
        async with pool.acquire() as conn, conn.transaction():
            await queries.sms_messages.lock_for_attempts(conn, attempt_ids=ids)
            await queries.sms_messages.finish_sends(
                conn, attempt_ids=ids, outcomes=[o[1] for o in outcomes],
                details=[o[2] for o in outcomes], gateways=[o[3] for o in outcomes], **params)
    except asyncpg.PostgresError as exc:
        raise refused_as_batch(exc) from exc


async def cancel(conn: Executor, account_id: int, message_id: int) -> None:
    """Cancel the sends still to come (nothing when none are)."""
    await queries.sms_messages.cancel(conn, id=message_id, account_id=account_id)
