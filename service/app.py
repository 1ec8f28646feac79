"""The HTTP API: Starlette routes over the store. Holds no state of its own."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import database, file_routes, openapi, sms_routes, voice_routes
from .http_errors import ApiError, handle_api_error, handle_http_exception
from .http_json import JSON, authenticated
from .queue_signal import DueNotifier
from .settings import Settings
from .sound_files import ensure_sounds_dir


async def healthz(request: Request) -> Response:
    return JSON({"status": "ok"})


def link_route_path(settings: Settings) -> str:
    return urlsplit(settings.link_base_url).path.rstrip("/") + "/{token}"


def create_app(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await database.migrate(settings.database_url)
        ensure_sounds_dir(settings.sounds_dir)
        app.state.pool = await database.create_pool(settings.database_url)
        app.state.notifier = DueNotifier(app.state.pool)
        app.state.notifier.start()
        try:
            yield
        finally:
            await app.state.notifier.stop()
            await app.state.pool.close()

    sms, voice, files = sms_routes, voice_routes, file_routes
    one = "/messages/sms/{message_id:int}"
    one_voice = "/messages/voice/{message_id:int}"
    routes = [
        Route("/messages/sms", authenticated(sms.create_sms), methods=["POST"]),
        Route("/messages/sms", authenticated(sms.list_sms), methods=["GET"]),
        Route(one, authenticated(sms.get_sms), methods=["GET"]),
        Route(one, authenticated(sms.cancel_sms), methods=["DELETE"]),
        Route("/messages/voice", authenticated(voice.create_voice), methods=["POST"]),
        Route("/messages/voice", authenticated(voice.list_voice), methods=["GET"]),
        Route(one_voice, authenticated(voice.get_voice), methods=["GET"]),
        Route(one_voice, authenticated(voice.cancel_voice), methods=["DELETE"]),
        Route("/files", authenticated(files.list_files), methods=["GET"]),
        Route("/files/{name}", authenticated(files.put_file), methods=["PUT"]),
        Route("/files/{name}", authenticated(files.get_file), methods=["GET"]),
        Route("/files/{name}", authenticated(files.delete_file), methods=["DELETE"]),
        Route(link_route_path(settings), sms.open_link, methods=["GET", "HEAD"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/openapi.json", openapi.spec_json, methods=["GET"]),
        Route("/docs", openapi.docs_page, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={ApiError: handle_api_error, HTTPException: handle_http_exception},
    )
    app.state.settings = settings
    return app
