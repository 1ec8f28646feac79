"""HTTP handlers of what the account receives: its numbers, the phones that
opted out of its SMS, and the SMS sent to its numbers."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from service.domain.phone_numbers import E164_SHAPE
from service.domain.refusals import FieldError, Reason, Refused, validation_failed
from service.http.json_io import JSON, message_id_param, page_links, page_params
from service.settings import Settings
from service.store import account_numbers, inbound_messages, opt_outs
from service.store.api_keys import Account
from service.store.queries import queries

RESOURCE = "Inbound"


async def list_numbers(request: Request, account: Account) -> Response:
    rows = await queries.phone_numbers.list_for_account(
        request.app.state.pool, account_id=account.id)
    return JSON([account_numbers.render(r) for r in rows])


async def list_opt_outs(request: Request, account: Account) -> Response:
    """Ordered by phone; keyset pages with `after` (the last phone of a page)."""
    settings: Settings = request.app.state.settings
    per_page, _ = page_params(request, "OptOut")
    after = request.query_params.get("after")
    # A cursor: only its shape matters (it need not be a dialable number).
    if after is not None and not E164_SHAPE.fullmatch(after):
        raise validation_failed([FieldError("OptOut", "after", "invalid",
                                            "after must be a phone number like +46736265449")])
    rows = await queries.opt_outs.list_page(
        request.app.state.pool, account_id=account.id, after=after or "", limit=per_page)
    return JSON([opt_outs.render(r) for r in rows], headers={
        "Link": page_links(settings.public_url("/opt-outs"), per_page, rows, "after", "phone")})


async def list_inbound(request: Request, account: Account) -> Response:
    state = request.app.state
    settings: Settings = state.settings
    per_page, before = page_params(request, RESOURCE)
    rows = await queries.inbound_messages.list_page(
        state.pool, account_id=account.id, before_id=before, limit=per_page)
    return JSON([inbound_messages.render(r, settings) for r in rows],
                headers={"Link": page_links(settings.public_url(inbound_messages.PATH),
                                            per_page, rows)})


async def get_inbound(request: Request, account: Account) -> Response:
    state = request.app.state
    out = await inbound_messages.load(state.pool, account.id, message_id_param(request),
                                      state.settings)
    if out is None:
        raise Refused(Reason.NOT_FOUND, "Not Found")
    return JSON(out)
