"""The HTTP API: Starlette routes over the store. Holds no state of its own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
from starlette.applications import Starlette
from starlette.convertors import IntegerConvertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import metrics
from service.collector import collect_less
from service.domain.auth_throttle import AuthThrottle
from service.domain.destinations import parse_countries
from service.domain.refusals import Refused
from service.http import (
    docs_page,
    file_routes,
    inbound_routes,
    openapi,
    sms_routes,
    voice_routes,
    webhook_routes,
)
from service.http.errors import (
    handle_http_exception,
    handle_refused,
    handle_unavailable,
    unavailable_response,
)
from service.http.json_io import JSON, authenticated
from service.settings import Settings
from service.store import database
from service.store.queries import queries
from service.store.queue_signal import DueNotifier
from service.store.sound_files import ensure_sounds_dir
from service.telephony.ari import AriClient, AriError

log = logging.getLogger(__name__)


class IdConvertor(IntegerConvertor):
    """Path ids: at most 19 digits (a bigint), so a longer one is simply no
    route (404), never a conversion Python refuses (over 4,300 digits)."""

    regex = "[0-9]{1,19}"


register_url_convertor("id", IdConvertor())

PURGE_EVERY_SECONDS = 600.0


async def purge_idempotency_keys(pool: asyncpg.Pool) -> None:
    """Idempotency keys live 24 hours; every API process sweeps the expired
    ones now and then (a DELETE that any of them may run)."""
    while True:
        try:
            await queries.idempotency_keys.purge_expired(pool)
        except database.OUTAGE as exc:
            log.warning("purging idempotency keys failed (retried later): %s", exc)
        except Exception:  # a bug: logged; the sweep must go on, and the API with it
            log.exception("purging idempotency keys failed")
        await asyncio.sleep(PURGE_EVERY_SECONDS)


async def healthz(request: Request) -> Response:
    return JSON({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready when PostgreSQL answers and the gateway Asterisk's ARI does."""
    state = request.app.state
    checks: dict[str, str] = {}
    try:
        await state.pool.fetchval("SELECT 1", timeout=2)
        checks["postgres"] = "ok"
    except Exception as exc:  # any failure is "not ready"; its name, not its text
        checks["postgres"] = type(exc).__name__
    try:
        await state.ari.info()
        checks["asterisk"] = "ok"
    except AriError as exc:
        checks["asterisk"] = type(exc).__name__
    ready = all(v == "ok" for v in checks.values())
    return JSON({"status": "ready" if ready else "not ready", "checks": checks},
                status_code=200 if ready else 503)


async def metrics_page(request: Request) -> Response:
    await metrics.refresh_queue(request.app.state.pool)
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


class CountAccepted:
    """Counts messages the API accepted (201 on POST /messages/*, not replays)."""

    KINDS = {"/messages/sms": "sms", "/messages/voice": "voice"}

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = None
        if scope["type"] == "http" and scope["method"] == "POST":
            kind = self.KINDS.get(scope["path"])
        if kind is None:
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 201:
                replayed = any(k.lower() == b"idempotent-replayed"
                               for k, _ in message.get("headers", []))
                if not replayed:
                    metrics.ACCEPTED.labels(kind).inc()
            await send(message)

        await self.app(scope, receive, counting_send)


# On every HTML page (the tracked link's page, /docs): no script, no outside
# resource, no framing (clickjacking the link page), no referrer to carry the
# link's token. Inline styles only, which both pages use.
HTML_SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
     b"form-action 'none'; frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class SecurityHeaders:
    """`X-Content-Type-Options: nosniff` on every response, and the headers
    above on every text/html one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                content_type = next((v for k, v in headers if k.lower() == b"content-type"),
                                    b"")
                if content_type.lower().startswith(b"text/html"):
                    headers.extend(HTML_SECURITY_HEADERS)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` (or every part of an exception group) says the database
    cannot be reached now."""
    if database.unreachable(exc):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(database_unavailable(e) for e in exc.exceptions)
    return False


class DatabaseOutages:
    """The outermost layer: a database outage met anywhere, also where the
    route's exception handlers do not reach (another middleware, a handler
    itself, an exception group), answers 503 with Retry-After, never a 500
    or a dropped connection. Logs the outage once when it starts (the
    handlers and this) and once when it ends: the first authenticated request
    answered below 500 afterwards (authentication reads the database)."""

    def __init__(self, app: ASGIApp, outage: database.OutageLog) -> None:
        self.app = app
        self.outage = outage

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if status or not database_unavailable(exc):
                raise
            self.outage.failed(exc)
            await unavailable_response()(scope, receive, send)
            return
        if (self.outage.since is not None and status < 500
                and any(k == b"authorization" for k, _ in scope.get("headers", []))):
            self.outage.recovered()


def link_route_path(settings: Settings) -> str:
    return urlsplit(settings.link_base_url).path.rstrip("/") + "/{token}"


def create_app_from_env() -> Starlette:
    """The factory uvicorn's worker processes call (`amivono api` with workers)."""
    return create_app(Settings.from_env())


def create_app(settings: Settings) -> Starlette:
    # A mistyped AMIVONO_ALLOWED_COUNTRIES stops the start, not every send.
    parse_countries([settings.allowed_countries])
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The schema is migrated once by the command that starts the process
        # tree (`amivono run|api|migrate`), not by each process.
        ensure_sounds_dir(settings.sounds_dir)
        try:
            app.state.pool = await database.create_pool(
                settings.database_url, min_size=2, max_size=settings.db_pool_size)
        except database.OUTAGE as exc:
            # Started while PostgreSQL is away: serve (503 until it is back)
            # with a pool that connects on demand, rather than exit.
            log.warning("database unavailable at start (%s: %s); answering 503 until it"
                        " is back", type(exc).__name__, exc)
            app.state.pool = await database.create_pool(
                settings.database_url, min_size=0, max_size=settings.db_pool_size)
        app.state.notifier = DueNotifier(app.state.pool)
        app.state.notifier.start()
        # The readiness probe's client; no events, only GET /asterisk/info.
        app.state.ari = AriClient(settings.ari_url, settings.ari_user, settings.ari_password,
                                  app=settings.ari_app, timeout=2.0)
        purge = asyncio.create_task(purge_idempotency_keys(app.state.pool))
        collect_less()
        try:
            yield
        finally:
            purge.cancel()
            await app.state.notifier.stop()
            await app.state.ari.close()
            await app.state.pool.close()

    sms, voice, files, inbound = sms_routes, voice_routes, file_routes, inbound_routes
    hooks = webhook_routes
    hook = "/webhooks/{endpoint_id:id}"
    one = "/messages/sms/{message_id:id}"
    one_voice = "/messages/voice/{message_id:id}"
    routes = [
        Route("/messages/sms", authenticated(sms.create_sms), methods=["POST"]),
        Route("/messages/sms", authenticated(sms.list_sms), methods=["GET"]),
        Route(one, authenticated(sms.get_sms), methods=["GET"]),
        Route(one, authenticated(sms.cancel_sms), methods=["DELETE"]),
        Route("/messages/voice", authenticated(voice.create_voice), methods=["POST"]),
        Route("/messages/voice", authenticated(voice.list_voice), methods=["GET"]),
        Route(one_voice, authenticated(voice.get_voice), methods=["GET"]),
        Route(one_voice, authenticated(voice.cancel_voice), methods=["DELETE"]),
        Route("/messages/inbound", authenticated(inbound.list_inbound), methods=["GET"]),
        Route("/messages/inbound/{message_id:id}", authenticated(inbound.get_inbound),
              methods=["GET"]),
        Route("/numbers", authenticated(inbound.list_numbers), methods=["GET"]),
        Route("/opt-outs", authenticated(inbound.list_opt_outs), methods=["GET"]),
        Route("/webhooks", authenticated(hooks.create_webhook), methods=["POST"]),
        Route("/webhooks", authenticated(hooks.list_webhooks), methods=["GET"]),
        Route(hook, authenticated(hooks.get_webhook), methods=["GET"]),
        Route(hook, authenticated(hooks.update_webhook), methods=["PATCH"]),
        Route(hook, authenticated(hooks.delete_webhook), methods=["DELETE"]),
        Route(f"{hook}/test", authenticated(hooks.test_webhook), methods=["POST"]),
        Route(f"{hook}/deliveries", authenticated(hooks.list_deliveries), methods=["GET"]),
        Route(f"{hook}/deliveries/{{delivery_id:id}}/retry",
              authenticated(hooks.retry_delivery), methods=["POST"]),
        Route("/files", authenticated(files.list_files), methods=["GET"]),
        # `path`: a name with a (decoded) slash in it, such as "%2e%2e%2f",
        # still reaches the name check and is 422, not an unknown route.
        Route("/files/{name:path}", authenticated(files.put_file), methods=["PUT"]),
        Route("/files/{name:path}", authenticated(files.get_file), methods=["GET"]),
        Route("/files/{name:path}", authenticated(files.delete_file), methods=["DELETE"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_page, methods=["GET"]),
        Route("/openapi.json", openapi.spec_json, methods=["GET"]),
        Route("/docs", docs_page.docs_page, methods=["GET"]),
        # Last: with a link base that has no path, "/{token}" would shadow the rest.
        Route(link_route_path(settings), sms.open_link, methods=["GET", "HEAD"]),
    ]
    outage = database.OutageLog("api", log)
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(SecurityHeaders), Middleware(DatabaseOutages, outage=outage),
                    Middleware(CountAccepted)],
        exception_handlers={Refused: handle_refused, HTTPException: handle_http_exception,
                            **dict.fromkeys(database.UNAVAILABLE, handle_unavailable)},
    )
    # No 307 from "/files/x/" to "/files/x": such a redirect answered before
    # authentication, was built from the Host header, and sent a client from
    # "/files/..%2f" to "/files/.." (a dot segment its URL library resolves
    # to another resource). A path that matches no route is a 404.
    app.router.redirect_slashes = False
    app.state.settings = settings
    app.state.auth_throttle = AuthThrottle(settings.auth_failure_burst,
                                           settings.auth_failures_per_minute)
    app.state.upload_slots = asyncio.Semaphore(max(1, settings.max_concurrent_uploads))
    app.state.outage = outage
    return app
