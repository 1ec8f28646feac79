"""Errors the API returns, as JSON in the style the spec's API imitates.

{"message": "Validation Failed",
 "errors": [{"resource": "Sms", "field": "to", "code": "invalid", "message": "..."}]}
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match


@dataclass(frozen=True)
class FieldError:
    resource: str
    field: str
    code: str  # missing_field, invalid, too_long, out_of_range, unknown_field
    message: str

    def as_json(self) -> dict[str, str]:
        return {
            "resource": self.resource,
            "field": self.field,
            "code": self.code,
            "message": self.message,
        }


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body: dict[str, object] = {"message": self.message}
        if self.errors:
            body["errors"] = [e.as_json() for e in self.errors]
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def validation_failed(errors: list[FieldError]) -> ApiError:
    return ApiError(422, "Validation Failed", errors)


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    response = exc.response()
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
