"""HTTP handlers of webhook endpoints and their deliveries."""

from __future__ import annotations

import json

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from service.delivery.webhook_sender import resolve_checked
from service.domain import webhook_signing
from service.domain.egress import RefusedUrl, allowed_networks
from service.domain.refusals import FieldError, Reason, Refused, validation_failed
from service.domain.statuses import FieldCode
from service.domain.webhook_requests import RESOURCE, parse_webhook_request
from service.http.json_io import JSON, page_links, page_params, read_json
from service.settings import Settings
from service.store import webhooks
from service.store.api_keys import Account
from service.store.queries import queries
from service.store.queue_signal import notify_webhooks

NOT_FOUND = "Not Found"


async def _check_url(url: str, settings: Settings) -> None:
    """Refused (422) when the host resolves to an internal address; checked
    again at every delivery."""
    try:
        await resolve_checked(url, allowed_networks(settings.webhook_allowed_networks))
    except RefusedUrl as exc:
        raise validation_failed([FieldError(RESOURCE, "url", FieldCode.INVALID,
                                            str(exc))]) from None


def _endpoint_id(request: Request, name: str = "endpoint_id") -> int:
    value = int(request.path_params[name])
    if value > 2**63 - 1:
        raise Refused(Reason.NOT_FOUND, NOT_FOUND)
    return value


async def _endpoint(request: Request, account: Account) -> asyncpg.Record:
    row: asyncpg.Record | None = await queries.webhook_endpoints.get(
        request.app.state.pool, id=_endpoint_id(request), account_id=account.id)
    if row is None:
        raise Refused(Reason.NOT_FOUND, NOT_FOUND)
    return row


async def create_webhook(request: Request, account: Account) -> Response:
    settings: Settings = request.app.state.settings
    req = parse_webhook_request(await read_json(request))
    assert req.url is not None
    await _check_url(req.url, settings)
    secret = webhook_signing.new_secret()
    row = await queries.webhook_endpoints.create(
        request.app.state.pool, account_id=account.id, url=req.url,
        description=req.description or "", events=req.events or [], secret=secret)
    # The secret is shown here, once.
    return JSON({**webhooks.render(row), "secret": secret}, status_code=201,
                headers={"Location": webhooks.endpoint_url(settings, row["id"])})


async def list_webhooks(request: Request, account: Account) -> Response:
    rows = await queries.webhook_endpoints.list_for_account(request.app.state.pool,
                                                            account_id=account.id)
    return JSON([webhooks.render(r) for r in rows])


async def get_webhook(request: Request, account: Account) -> Response:
    return JSON(webhooks.render(await _endpoint(request, account)))


async def update_webhook(request: Request, account: Account) -> Response:
    settings: Settings = request.app.state.settings
    req = parse_webhook_request(await read_json(request), patch=True)
    if req.url is not None:
        await _check_url(req.url, settings)
    row = await queries.webhook_endpoints.update(
        request.app.state.pool, id=_endpoint_id(request), account_id=account.id, url=req.url,
        description=req.description, events=req.events, enabled=req.enabled)
    if row is None:
        raise Refused(Reason.NOT_FOUND, NOT_FOUND)
    return JSON(webhooks.render(row))


async def delete_webhook(request: Request, account: Account) -> Response:
    if await queries.webhook_endpoints.delete(request.app.state.pool, id=_endpoint_id(request),
                                              account_id=account.id) is None:
        raise Refused(Reason.NOT_FOUND, NOT_FOUND)
    return Response(status_code=204)


async def test_webhook(request: Request, account: Account) -> Response:
    endpoint = await _endpoint(request, account)
    pool = request.app.state.pool
    row = await queries.webhook_deliveries.create_test(
        pool, endpoint_id=endpoint["id"], account_id=account.id,
        data=json.dumps({"endpoint_id": endpoint["id"],
                         "message": "A test event from Amivono."}))
    await notify_webhooks(pool)
    return JSON(webhooks.render_delivery(row), status_code=202)


async def list_deliveries(request: Request, account: Account) -> Response:
    settings: Settings = request.app.state.settings
    endpoint = await _endpoint(request, account)
    per_page, before = page_params(request, RESOURCE)
    rows = await queries.webhook_deliveries.list_for_endpoint(
        request.app.state.pool, endpoint_id=endpoint["id"],
        account_id=account.id, before_id=before, limit=per_page)
    base = settings.public_url(f"{webhooks.PATH}/{endpoint['id']}/deliveries")
    return JSON([webhooks.render_delivery(r) for r in rows],
                headers={"Link": page_links(base, per_page, rows)})


async def retry_delivery(request: Request, account: Account) -> Response:
    pool = request.app.state.pool
    row = await queries.webhook_deliveries.retry(
        pool, id=_endpoint_id(request, "delivery_id"), endpoint_id=_endpoint_id(request),
        account_id=account.id)
    if row is None:
        if await queries.webhook_deliveries.exists(
                pool, id=_endpoint_id(request, "delivery_id"), endpoint_id=_endpoint_id(request),
                account_id=account.id):
            raise Refused(Reason.CONFLICT, "The delivery is still pending: it is sent on its"
                                           " schedule")
        raise Refused(Reason.NOT_FOUND, NOT_FOUND)
    await notify_webhooks(pool)
    return JSON(webhooks.render_delivery(row), status_code=202)

