"""The kinds of message (SMS, voice) as one abstraction over the store: how
each is created, rendered, loaded with its attempts and canceled. The HTTP
routes and the operator's commands both go through it, so the two kinds
follow the same rules in one place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from service.settings import Settings
from service.store import sms_messages, speech, voice_messages
from service.store.database import Executor
from service.store.idempotency_keys import Reservation
from service.store.queries import queries

# Renders a parsed request's speech, before any connection is taken: the
# engine may take long, and a pooled connection must not wait on it.
Prepare = Callable[[Any, Settings], Awaitable[speech.Rendered]]
# Stores a parsed request with its speech (from Prepare), in the caller's
# transaction; returns the message as the API shows it.
Create = Callable[[asyncpg.Connection, int, Any, Settings, speech.Rendered],
                  Awaitable[dict[str, Any]]]
Render = Callable[..., dict[str, Any]]  # (row, settings, attempts=None)
Cancel = Callable[[Executor, int, int], Awaitable[None]]
# Stores a parsed request, and its response into its Idempotency-Key's
# reservation if any, in a transaction shared with concurrent requests and
# committed before it returns; None when this kind or request cannot be
# stored that way.
CreateBatched = Callable[[asyncpg.Pool, int, Any, Settings, Reservation | None],
                         Awaitable[dict[str, Any]]] | None


@dataclass(frozen=True)
class MessageKind:
    name: str       # "sms", "voice"
    path: str       # "/messages/sms"
    table: Any      # the message table's named statements
    attempts: Any   # its attempts table's named statements
    prepare: Prepare
    create: Create
    render: Render
    cancel: Cancel
    batched: Callable[[Any], CreateBatched]

    async def load(self, conn: Executor, account_id: int, message_id: int,
                   settings: Settings) -> dict[str, Any] | None:
        """The message with its attempts, if it is this account's."""
        row = await self.table.get(conn, id=message_id, account_id=account_id)
        if row is None:
            return None
        attempts = await self.attempts.list_for_message(conn, message_id=message_id)
        return self.render(row, settings, list(attempts))


SMS = MessageKind("sms", sms_messages.PATH, queries.sms_messages, queries.sms_attempts,
                  sms_messages.prepare, sms_messages.create, sms_messages.render,
                  sms_messages.cancel, sms_messages.batched)
VOICE = MessageKind("voice", voice_messages.PATH, queries.voice_messages,
                    queries.voice_attempts, voice_messages.prepare, voice_messages.create,
                    voice_messages.render, voice_messages.cancel, lambda _: None)
KINDS = {kind.name: kind for kind in (SMS, VOICE)}
