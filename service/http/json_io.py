"""JSON in and out of the API, and the pieces every resource shares."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from service.domain.auth_throttle import AuthThrottle
from service.domain.refusals import FieldError, Reason, Refused
from service.domain.request_fields import HUGE_INTEGER
from service.store.api_keys import Account, active_key_hashes, bearer_token, hash_key
from service.store.database import OUTAGE
from service.store.rate_limit import admit

MAX_BODY_BYTES = 64 * 1024
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100

Handler = Callable[[Request, Account], Awaitable[Response]]


class JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


def authenticated(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Resolve the Bearer key, count the request, and put rate-limit headers on the
    answer; a client address that keeps failing authentication is throttled."""

    async def endpoint(request: Request) -> Response:
        state = request.app.state
        throttle: AuthThrottle = state.auth_throttle
        address = request.client.host if request.client else ""
        token = bearer_token(request.headers.get("authorization"))
        key_hash = hash_key(token) if token is not None else None
        wait = throttle.retry_after(address, key_hash)
        if wait is not None and throttle.claim_active_load(key_hash):
            try:
                throttle.know_active(await active_key_hashes(state.pool))
            except OUTAGE:
                pass  # still throttled: 429 below; the next load is REFRESH_SECONDS away
            else:
                wait = throttle.retry_after(address, key_hash)
        if wait is not None:
            # Answered without a query of its own: a guesser costs almost nothing.
            raise Refused(Reason.RATE_LIMITED,
                          "Too many failed authentications from this address; "
                          f"retry after {wait} s", headers={"Retry-After": str(wait)})
        try:
            account, rate = await admit(state.pool, key_hash, state.settings.rate_limit_per_hour)
        except Refused as refused:
            # Only a wrong key costs a query; a missing one is refused for free.
            if refused.reason is Reason.UNAUTHORIZED and token is not None:
                throttle.failed(address)
            raise
        if key_hash is not None:
            throttle.succeeded(key_hash)
        request.state.rate_limit_headers = rate.headers()
        response = await handler(request, account)
        response.headers.update(rate.headers())
        return response

    return endpoint


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 past `limit` without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refused(Reason.TOO_LARGE, f"Request body is larger than {limit} bytes")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Refused(Reason.TOO_LARGE, f"Request body is larger than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # Nobody is left to answer; no traceback in the log for it.
        raise Refused(Reason.BAD_REQUEST, "The client closed the connection mid-request") from None
    return b"".join(chunks)


# Integers in a JSON body longer than this are kept as HugeInteger, never
# converted: Python refuses to convert more than 4,300 digits (a 500), and no
# field of the API takes anything near this long.
MAX_JSON_INT_DIGITS = 100
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _parse_int(text: str) -> int | float:
    if len(text) > MAX_JSON_INT_DIGITS:
        return HUGE_INTEGER
    return int(text)


class DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            # Which of the two counts differs between parsers: refuse both.
            raise DuplicateKey(key)
        out[key] = value
    return out


def check_json_content_type(request: Request) -> None:
    """415 unless the body is declared JSON in UTF-8: `application/json` or
    `application/<x>+json`, with no parameter but `charset=utf-8`. No
    Content-Type at all is taken as JSON (some clients send none)."""
    header = request.headers.get("content-type")
    if header is None:
        return
    media, *params = (part.strip() for part in header.split(";"))
    media = media.lower()
    json_type = media == "application/json" or (
        media.startswith("application/") and media.endswith("+json"))
    charset_ok = all(p.lower().replace(" ", "").replace('"', "") == "charset=utf-8"
                     for p in params if p)
    if not (json_type and charset_ok):
        raise Refused(Reason.UNSUPPORTED_MEDIA,
                      "Unsupported Content-Type: send application/json in UTF-8")


async def read_json(request: Request) -> Any:
    check_json_content_type(request)
    raw = await read_body(request, MAX_BODY_BYTES)
    try:
        # Decoded as UTF-8 first: json.loads(bytes) would also take UTF-16 and -32.
        text = raw.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_int=_parse_int)
        # A lone surrogate escape ("\ud800") parses but is no Unicode text: nothing
        # could measure, store or echo it back in an error. Only an escape can
        # make one (UTF-8 has none), so only then is the value encoded to look.
        if _SURROGATE_ESCAPE.search(text):
            json.dumps(value, ensure_ascii=False).encode()
    except DuplicateKey as exc:
        raise Refused(Reason.BAD_REQUEST, f"Problems parsing JSON: duplicate key {exc}") from None
    except (ValueError, UnicodeError, RecursionError):  # RecursionError: absurd nesting
        raise Refused(Reason.BAD_REQUEST, "Problems parsing JSON") from None
    return value


def int_query(request: Request, resource: str, name: str, default: int, low: int,
              high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    # The length first: Python refuses to convert more than 4,300 digits.
    if (not raw.isascii() or not raw.isdigit() or len(raw) > len(str(high))
            or not low <= int(raw) <= high):
        raise Refused(Reason.INVALID, "Validation Failed", [FieldError(
            resource, name, "invalid", f"{name} must be an integer from {low} to {high}")])
    return int(raw)


def page_params(request: Request, resource: str) -> tuple[int, int]:
    """(per_page, before): keyset pagination on id, newest first."""
    per_page = int_query(request, resource, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
    before = int_query(request, resource, "before", 2**62, 1, 2**62)
    return per_page, before


def page_links(base: str, per_page: int, rows: list[Any], cursor: str = "before",
               column: str = "id") -> str:
    """`first`, and `next` when the page is full: `cursor` set to the last
    row's `column` (keyset pagination)."""
    links = [f'<{base}?{urlencode({"per_page": per_page})}>; rel="first"']
    if len(rows) == per_page:
        query = urlencode({"per_page": per_page, cursor: rows[-1][column]})
        links.insert(0, f'<{base}?{query}>; rel="next"')
    return ", ".join(links)


BIGINT_MAX = 2**63 - 1  # ids are PostgreSQL bigint


def message_id_param(request: Request) -> int:
    message_id = int(request.path_params["message_id"])
    if message_id > BIGINT_MAX:  # no such id, and PostgreSQL would refuse the parameter
        raise Refused(Reason.NOT_FOUND, "Not Found")
    return message_id
