"""Errors the API returns, as JSON in the style the spec's API imitates:
a refusal (service/domain/refusals.py) with its reason's status, and
Starlette's own 404/405 in the same shape."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

from service.domain.refusals import Reason, Refused
from service.store import database

# The one mapping from a refusal's reason to its HTTP status.
STATUS: dict[Reason, int] = {
    Reason.BAD_REQUEST: 400,
    Reason.UNAUTHORIZED: 401,
    Reason.NOT_FOUND: 404,
    Reason.CONFLICT: 409,
    Reason.TOO_LARGE: 413,
    Reason.UNSUPPORTED_MEDIA: 415,
    Reason.INVALID: 422,
    Reason.RATE_LIMITED: 429,
    Reason.BUSY: 503,
}


def refusal_response(exc: Refused) -> JSONResponse:
    body: dict[str, object] = {"message": exc.message}
    if exc.errors:
        body["errors"] = [e.as_json() for e in exc.errors]
    return JSONResponse(body, status_code=STATUS[exc.reason], headers=exc.headers)


RETRY_AFTER_OUTAGE = 5  # seconds


def unavailable_response() -> JSONResponse:
    return JSONResponse({"message": "The database is unavailable; retry later"},
                        status_code=503, headers={"Retry-After": str(RETRY_AFTER_OUTAGE)})


async def handle_unavailable(request: Request, exc: Exception) -> Response:
    """The database is away (restarting, unreachable): a clean 503 the client
    may retry, not a 500 with a traceback; the outage is logged once
    (app.state.outage, an OutageLog), not once per request."""
    if not database.unreachable(exc):
        raise exc  # a file's OSError: a 500, not "retry later"
    outage = getattr(request.app.state, "outage", None)
    if outage is not None:
        outage.failed(exc)
    return unavailable_response()


async def handle_refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refused)
    response = refusal_response(exc)
    # Rate-limit headers of an authenticated request ride on its errors too.
    for name, value in getattr(request.state, "rate_limit_headers", {}).items():
        response.headers.setdefault(name, value)
    return response


def allowed_methods(request: Request) -> str:
    """Every method of every route on this path. A path with one route per method
    (GET and POST /messages/sms) would otherwise name only the first route's."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: "Not Found", 405: "Method Not Allowed"}
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request) or headers.get("Allow", "")
    return JSONResponse(
        {"message": messages.get(exc.status_code, exc.detail)},
        status_code=exc.status_code,
        headers=headers,
    )
