"""SMS the trunk delivered to us, and what each does: a reply ends the repeats
of the SMS it answers, STOP opts the phone out of the account's SMS (START
back in), HELP gets the help text. All of it in one transaction, so an
inbound SMS is stored with its effects or not at all."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from service.domain import inbound_words
from service.domain.delivery_receipts import Receipt
from service.domain.json_schema import E164, ID, TIMESTAMP, URL, Fields, enum
from service.domain.sms_requests import SmsRequest
from service.domain.statuses import InboundKind
from service.domain.timestamps import iso
from service.settings import Settings
from service.store import sms_messages
from service.store.database import Executor, refused_as_batch
from service.store.queries import queries

PATH = "/messages/inbound"


@dataclass(frozen=True)
class Inbound:
    id: int
    account_id: int | None    # None: nobody owns the number it was sent to
    kind: InboundKind
    affected: list[int] = field(default_factory=list)  # SMS it stopped
    answer_id: int | None = None  # the confirmation or help SMS it caused


async def record(pool: asyncpg.Pool, *, from_number: str, to_number: str, body: str,
                 sip_key: str, settings: Settings) -> Inbound | None:
    """Store an inbound SMS once and carry out what it asks; None when this
    SIP request was stored before (a duplicate changes nothing)."""
    kind = inbound_words.kind_of(body, inbound_words.word_list(settings.extra_stop_words))
    async with pool.acquire() as conn, conn.transaction():
        row = await queries.inbound_messages.insert(
            conn, from_number=from_number, to_number=to_number, body=body, kind=kind,
            sip_key=sip_key)
        if row is None:
            return None
        account_id = row["account_id"]
        if account_id is None:
            return Inbound(row["id"], None, kind)
        params = {"account_id": account_id, "phone": from_number}
        if kind == InboundKind.STOP:
            stopped = await queries.inbound_messages.stop_opted_out(conn, **params)
            changed = await queries.opt_outs.add(conn, **params, inbound_id=row["id"])
            answer = settings.stop_reply if changed else None
        else:
            stopped = await queries.inbound_messages.stop_replied(
                conn, **params, number=to_number, inbound_id=row["id"])
            answer = None
            if kind == InboundKind.START:
                changed = await queries.opt_outs.remove(conn, **params)
                answer = settings.start_reply if changed else None
            elif kind == InboundKind.HELP:
                answer = settings.help_reply
        affected = [r["id"] for r in stopped]
        if affected:
            await queries.inbound_messages.set_affected(conn, id=row["id"], ids=affected)
        answer_id = None
        if answer:
            # One SMS back from the number it was sent to; it goes out even to a
            # phone that just opted out (that is its point).
            sent = await sms_messages.create(
                conn, account_id, SmsRequest(
                    from_number=to_number, to_number=from_number, text=answer,
                    repeat_total=1, repeat_interval=None, tracked=False, stop_on_reply=False),
                settings, ignore_opt_out=True, any_sender=True)
            answer_id = sent["id"]
        return Inbound(row["id"], account_id, kind, affected, answer_id)


async def record_report(pool: asyncpg.Pool, receipt: Receipt, body: str,
                        settings: Settings) -> asyncpg.Record | None:
    """Match the carrier's receipt to its attempt, once; None for a duplicate
    or a reference that names no attempt."""
    async with pool.acquire() as conn, conn.transaction():
        # Serialized with the attempt's finish_send (sql/sms_messages.sql).
        await queries.sms_messages.lock_for_attempt(conn, attempt_id=receipt.ref)
        row: asyncpg.Record | None = await queries.sms_messages.record_report(
            conn, attempt_id=receipt.ref, delivered=receipt.delivered, stat=receipt.stat,
            error=receipt.error, receipt=body, max_failures=settings.sms_max_failures,
            retry_seconds=float(settings.sms_retry_seconds))
        return row


async def record_reports(pool: asyncpg.Pool, reports: list[tuple[Receipt, str]],
                         settings: Settings) -> list[asyncpg.Record | None]:
    """record_report for many (receipt, body) in one transaction (one commit
    instead of one each); BatchRefused when PostgreSQL refuses it for another
    reason than an outage (then record them one by one)."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            await queries.sms_messages.lock_for_attempts(
                conn, attempt_ids=[receipt.ref for receipt, _ in reports])
            rows: list[asyncpg.Record | None] = []
            for receipt, body in reports:
                rows.append(await queries.sms_messages.record_report(
                    conn, attempt_id=receipt.ref, delivered=receipt.delivered,
                    stat=receipt.stat, error=receipt.error, receipt=body,
                    max_failures=settings.sms_max_failures,
                    retry_seconds=float(settings.sms_retry_seconds)))
            return rows
    except asyncpg.PostgresError as exc:
        raise refused_as_batch(exc) from exc


# What render writes, in its order (the OpenAPI schema is built from it).
FIELDS: Fields = {
    "id": ID,
    "url": URL,
    "from": E164,
    "to": {"type": "string", "description": "The account's number it was sent to."},
    "message": {"type": "string"},
    "received_at": TIMESTAMP,
    "kind": enum(InboundKind),
    "affected": {"type": "array", "items": {"type": "integer", "minimum": 1},
                 "description": "Ids of the account's outbound SMS it stopped (replied or "
                                "opted out)."},
}


def render(row: Any, settings: Settings) -> dict[str, Any]:
    return {
        "id": row["id"],
        "url": settings.public_url(f"{PATH}/{row['id']}"),
        "from": row["from_number"],
        "to": row["to_number"],
        "message": row["body"],
        "received_at": iso(row["received_at"]),
        "kind": row["kind"],
        "affected": list(row["affected_ids"]),
    }


async def load(conn: Executor, account_id: int, inbound_id: int,
               settings: Settings) -> dict[str, Any] | None:
    row = await queries.inbound_messages.get(conn, id=inbound_id, account_id=account_id)
    return None if row is None else render(row, settings)
