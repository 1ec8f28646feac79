"""GET one, list and DELETE for each kind of message: the same rules for SMS
and voice (404 for another account's, keyset pages, 409 when nothing is
left to cancel), written once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from service.http.errors import ApiError
from service.http.json_io import JSON, Handler, message_id_param, page_links, page_params
from service.settings import Settings
from service.store.api_keys import Account

Load = Callable[[asyncpg.Connection, int, int, Settings], Awaitable[dict[str, Any] | None]]
Render = Callable[[asyncpg.Record, Settings], dict[str, Any]]
# Runs after a cancel with the statement's row (None when nothing changed).
AfterCancel = Callable[[asyncpg.Pool, asyncpg.Record | None], Awaitable[None]]


@dataclass(frozen=True)
class MessageKind:
    path: str       # "/messages/sms"
    resource: str   # "Sms", as named in validation errors
    table: Any      # the table's named statements: list_page, cancel
    load: Load
    render: Render


def get_handler(kind: MessageKind) -> Handler:
    async def get(request: Request, account: Account) -> Response:
        state = request.app.state
        async with state.pool.acquire() as conn:
            out = await kind.load(conn, account.id, message_id_param(request), state.settings)
        if out is None:
            raise ApiError(404, "Not Found")
        return JSON(out)

    return get


def list_handler(kind: MessageKind) -> Handler:
    async def list_(request: Request, account: Account) -> Response:
        state = request.app.state
        settings: Settings = state.settings
        per_page, before = page_params(request, kind.resource)
        rows = await kind.table.list_page(
            state.pool, account_id=account.id, before_id=before, limit=per_page)
        base = f"{settings.public_base_url.rstrip('/')}{kind.path}"
        return JSON([kind.render(r, settings) for r in rows],
                    headers={"Link": page_links(base, per_page, rows)})

    return list_


def cancel_handler(kind: MessageKind, after: AfterCancel | None = None) -> Handler:
    async def cancel(request: Request, account: Account) -> Response:
        state = request.app.state
        message_id = message_id_param(request)
        async with state.pool.acquire() as conn:
            row = await kind.table.cancel(conn, id=message_id, account_id=account.id)
            out = await kind.load(conn, account.id, message_id, state.settings)
        if out is None:
            raise ApiError(404, "Not Found")
        if after is not None:
            await after(state.pool, row)
        if out["status"] != "canceled":
            raise ApiError(409, f"Message {message_id} is {out['status']}: "
                                "nothing left to cancel")
        return JSON(out)

    return cancel
