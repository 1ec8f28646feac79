"""OpenAPI 3.1 description of the API, served at /openapi.json, and a docs page."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

SPEC: dict = {"openapi": "3.1.0", "info": {"title": "Amivono", "version": "0.1.0"},
              "paths": {}}


async def spec_json(request: Request) -> Response:
    return JSONResponse(SPEC)


async def docs_page(request: Request) -> Response:
    return HTMLResponse("<!doctype html><title>Amivono API</title><p>See /openapi.json</p>")
