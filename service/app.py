"""The HTTP API: Starlette routes over the store. Holds no state of its own."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from html import escape
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from . import database, idempotency, sms_messages
from .api_keys import Account, authenticate
from .http_errors import ApiError, FieldError, handle_api_error, handle_http_exception
from .queries import queries
from .queue_signal import DueNotifier
from .rate_limit import count_request
from .settings import Settings
from .sms_requests import RESOURCE as SMS_RESOURCE
from .sms_requests import parse_sms_request
from .tracked_links import TOKEN_SHAPE, is_preview

MAX_BODY_BYTES = 64 * 1024
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100

Handler = Callable[[Request, Account], Awaitable[Response]]


class JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


def authenticated(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Resolve the Bearer key, count the request, and put rate-limit headers on the answer."""

    async def endpoint(request: Request) -> Response:
        state = request.app.state
        account = await authenticate(state.pool, request.headers.get("authorization"))
        rate = await count_request(state.pool, account, state.settings.rate_limit_per_hour)
        request.state.rate_limit_headers = rate.headers()
        response = await handler(request, account)
        response.headers.update(rate.headers())
        return response

    return endpoint


async def read_json(request: Request) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, f"Request body is larger than {MAX_BODY_BYTES} bytes")
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, f"Request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "Problems parsing JSON") from None


def message_id_param(request: Request) -> int:
    return int(request.path_params["message_id"])


async def create_sms(request: Request, account: Account) -> Response:
    state = request.app.state
    settings: Settings = state.settings
    body = await read_json(request)
    sms = parse_sms_request(body, settings)

    key = request.headers.get(idempotency.HEADER)
    if key is not None:
        idempotency.check_key(key, SMS_RESOURCE)
        digest = idempotency.request_hash("POST", "/messages/sms", body)
        replay = await idempotency.reserve(state.pool, account.id, key, digest, SMS_RESOURCE)
        if replay is not None:
            headers = {"Idempotent-Replayed": "true"}
            if replay.location:
                headers["Location"] = replay.location
            return JSON(replay.body, status_code=replay.status, headers=headers)
    try:
        async with state.pool.acquire() as conn, conn.transaction():
            message_id = await sms_messages.create(conn, account.id, sms, settings)
            out = await sms_messages.load(conn, account.id, message_id, settings)
            assert out is not None
            location = sms_messages.message_url(settings, message_id)
            if key is not None:
                await idempotency.store(
                    conn, account.id, key, idempotency.StoredResponse(201, out, location)
                )
    except BaseException:
        if key is not None:
            await idempotency.release(state.pool, account.id, key)
        raise
    state.notifier.poke()
    return JSON(out, status_code=201, headers={"Location": location})


async def get_sms(request: Request, account: Account) -> Response:
    state = request.app.state
    async with state.pool.acquire() as conn:
        out = await sms_messages.load(conn, account.id, message_id_param(request), state.settings)
    if out is None:
        raise ApiError(404, "Not Found")
    return JSON(out)


def _int_query(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError(
            422,
            "Validation Failed",
            [
                FieldError(
                    SMS_RESOURCE, name, "invalid", f"{name} must be an integer from {low} to {high}"
                )
            ],
        )
    return int(raw)


async def list_sms(request: Request, account: Account) -> Response:
    state = request.app.state
    settings: Settings = state.settings
    per_page = _int_query(request, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
    before = _int_query(request, "before", 2**62, 1, 2**62)
    rows = await queries.sms_messages.list_page(
        state.pool, account_id=account.id, before_id=before, limit=per_page
    )
    items = [sms_messages.render(r, settings) for r in rows]
    base = f"{settings.public_base_url.rstrip('/')}/messages/sms"
    links = [f'<{base}?{urlencode({"per_page": per_page})}>; rel="first"']
    if len(rows) == per_page:
        query = urlencode({"per_page": per_page, "before": rows[-1]["id"]})
        links.insert(0, f'<{base}?{query}>; rel="next"')
    return JSON(items, headers={"Link": ", ".join(links)})


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


async def healthz(request: Request) -> Response:
    return JSON({"status": "ok"})


def link_route_path(settings: Settings) -> str:
    return urlsplit(settings.link_base_url).path.rstrip("/") + "/{token}"


def create_app(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await database.migrate(settings.database_url)
        app.state.pool = await database.create_pool(settings.database_url)
        app.state.notifier = DueNotifier(app.state.pool)
        app.state.notifier.start()
        try:
            yield
        finally:
            await app.state.notifier.stop()
            await app.state.pool.close()

    routes = [
        Route("/messages/sms", authenticated(create_sms), methods=["POST"]),
        Route("/messages/sms", authenticated(list_sms), methods=["GET"]),
        Route("/messages/sms/{message_id:int}", authenticated(get_sms), methods=["GET"]),
        Route("/messages/sms/{message_id:int}", authenticated(cancel_sms), methods=["DELETE"]),
        Route(link_route_path(settings), open_link, methods=["GET", "HEAD"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={ApiError: handle_api_error, HTTPException: handle_http_exception},
    )
    app.state.settings = settings
    return app
