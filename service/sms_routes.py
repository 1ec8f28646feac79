"""HTTP handlers of the SMS resource and its tracked link."""

from __future__ import annotations

from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from . import idempotency, sms_messages
from .api_keys import Account
from .http_errors import ApiError
from .http_json import (
    JSON,
    message_id_param,
    page_links,
    page_params,
    read_json,
)
from .queries import queries
from .settings import Settings
from .sms_requests import RESOURCE, parse_sms_request
from .tracked_links import TOKEN_SHAPE, is_preview


async def create_sms(request: Request, account: Account) -> Response:
    state = request.app.state
    settings: Settings = state.settings
    body = await read_json(request)
    sms = parse_sms_request(body, settings)

    async def create(conn) -> tuple[dict, str]:  # noqa: ANN001
        out = await sms_messages.create(conn, account.id, sms, settings)
        return out, out["url"]

    response = await idempotency.create_once(
        request, account, RESOURCE, "/messages/sms", body, create)
    state.notifier.poke()
    return response


async def get_sms(request: Request, account: Account) -> Response:
    state = request.app.state
    async with state.pool.acquire() as conn:
        out = await sms_messages.load(conn, account.id, message_id_param(request), state.settings)
    if out is None:
        raise ApiError(404, "Not Found")
    return JSON(out)


async def list_sms(request: Request, account: Account) -> Response:
    state = request.app.state
    settings: Settings = state.settings
    per_page, before = page_params(request, RESOURCE)
    rows = await queries.sms_messages.list_page(
        state.pool, account_id=account.id, before_id=before, limit=per_page)
    items = [sms_messages.render(r, settings) for r in rows]
    base = f"{settings.public_base_url.rstrip('/')}/messages/sms"
    return JSON(items, headers={"Link": page_links(base, per_page, rows)})


async def cancel_sms(request: Request, account: Account) -> Response:
    state = request.app.state
    message_id = message_id_param(request)
    async with state.pool.acquire() as conn:
        await queries.sms_messages.cancel(conn, id=message_id, account_id=account.id)
        out = await sms_messages.load(conn, account.id, message_id, state.settings)
    if out is None:
        raise ApiError(404, "Not Found")
    if out["status"] != "canceled":
        raise ApiError(409, f"Message {message_id} is {out['status']}: nothing left to cancel")
    return JSON(out)


def _page(title: str, text: str, status: int = 200) -> HTMLResponse:
    html = (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<meta name=robots content=noindex><title>{escape(title)}</title>"
        f"<body style='font:18px sans-serif;margin:2em'><h1>{escape(title)}</h1>"
        f"<p>{escape(text)}</p></body></html>"
    )
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


async def open_link(request: Request) -> Response:
    token = request.path_params["token"]
    pool = request.app.state.pool
    if not TOKEN_SHAPE.fullmatch(token):
        return _page("Link not found", "This link is not valid.", 404)
    if is_preview(request):
        if await queries.sms_messages.link_exists(pool, token=token) is None:
            return _page("Link not found", "This link is not valid.", 404)
        return _page("Message link", "Open this link on your phone to confirm you got it.")
    row = await queries.sms_messages.record_click(pool, token=token)
    if row is None:
        return _page("Link not found", "This link is not valid.", 404)
    return _page("Thank you", "Confirmed: you will not receive this message again.")
