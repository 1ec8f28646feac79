"""POST, GET one, list and DELETE for each kind of message: the same rules
for SMS and voice (Idempotency-Key, 201 with Location, 404 for another
account's, keyset pages, 409 when nothing is left to cancel), written once
over the store's message kinds (service/store/message_kinds.py)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from service.domain.refusals import Reason, Refused
from service.http import idempotency
from service.http.json_io import JSON, Handler, message_id_param, page_links, page_params, read_json
from service.settings import Settings
from service.store.api_keys import Account
from service.store.message_kinds import MessageKind

# The JSON body -> a request of the kind, or a validation refusal.
Parse = Callable[[Any, Settings], Any]


def create_handler(kind: MessageKind, resource: str, parse: Parse) -> Handler:
    async def create(request: Request, account: Account) -> Response:
        state = request.app.state
        settings: Settings = state.settings
        body = await read_json(request)
        parsed = parse(body, settings)
        # Text-to-speech first, holding no connection (it may take long); only
        # its bookkeeping is in the create transaction. A replayed
        # Idempotency-Key finds its speech rendered already.
        rendered = await kind.prepare(parsed, settings)

        batched = kind.batched(parsed)
        committed = None if batched is None else functools.partial(
            batched, state.pool, account.id, parsed, settings)

        async def store(conn: asyncpg.Connection) -> tuple[dict[str, Any], str]:
            out = await kind.create(conn, account.id, parsed, settings, rendered)
            return out, out["url"]

        response = await idempotency.create_once(
            request, account, resource, kind.path, body, store, committed)
        state.notifier.poke()  # after commit: wakes the dispatchers
        return response

    return create


def get_handler(kind: MessageKind) -> Handler:
    async def get(request: Request, account: Account) -> Response:
        state = request.app.state
        async with state.pool.acquire() as conn:
            out = await kind.load(conn, account.id, message_id_param(request), state.settings)
        if out is None:
            raise Refused(Reason.NOT_FOUND, "Not Found")
        return JSON(out)

    return get


def list_handler(kind: MessageKind, resource: str) -> Handler:
    async def list_(request: Request, account: Account) -> Response:
        state = request.app.state
        settings: Settings = state.settings
        per_page, before = page_params(request, resource)
        rows = await kind.table.list_page(
            state.pool, account_id=account.id, before_id=before, limit=per_page)
        return JSON([kind.render(r, settings) for r in rows],
                    headers={"Link": page_links(settings.public_url(kind.path), per_page,
                                                rows)})

    return list_


def cancel_handler(kind: MessageKind) -> Handler:
    async def cancel(request: Request, account: Account) -> Response:
        state = request.app.state
        message_id = message_id_param(request)
        async with state.pool.acquire() as conn:
            await kind.cancel(conn, account.id, message_id)
            out = await kind.load(conn, account.id, message_id, state.settings)
        if out is None:
            raise Refused(Reason.NOT_FOUND, "Not Found")
        if out["status"] != "canceled":
            raise Refused(Reason.CONFLICT, f"Message {message_id} is {out['status']}: "
                                           "nothing left to cancel")
        return JSON(out)

    return cancel
