"""HTTP handlers of the SMS resource and its tracked link."""

from __future__ import annotations

from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from service.domain.sms_requests import RESOURCE, parse_sms_request
from service.domain.tracked_links import TOKEN_SHAPE, is_preview
from service.http.message_routes import (
    cancel_handler,
    create_handler,
    get_handler,
    list_handler,
)
from service.store.message_kinds import SMS
from service.store.queries import queries

create_sms = create_handler(SMS, RESOURCE, parse_sms_request)
get_sms = get_handler(SMS)
list_sms = list_handler(SMS, RESOURCE)
cancel_sms = cancel_handler(SMS)


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
    if is_preview(request.method, request.headers):
        if await queries.sms_messages.link_exists(pool, token=token) is None:
            return _page("Link not found", "This link is not valid.", 404)
        return _page("Message link", "Open this link on your phone to confirm you got it.")
    row = await queries.sms_messages.record_click(pool, token=token)
    if row is None:
        return _page("Link not found", "This link is not valid.", 404)
    return _page("Thank you", "Confirmed: you will not receive this message again.")
