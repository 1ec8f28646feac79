"""A real HTTP receiver for webhook tests, on loopback, and helpers that
verify what it got with the reference `standardwebhooks` library."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from aiohttp import web
from standardwebhooks import Webhook


class Receiver:
    """An HTTP endpoint on loopback that records what it is sent; it can answer
    errors, go away (connection refused), stall, or never answer at all."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        self.delay = 0.0
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((dict(request.headers), body))
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=self.status, text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def events(self, secret: str) -> list[dict[str, Any]]:
        """Every request, verified; each with its webhook-id."""
        out = []
        for headers, body in self.requests:
            lowered = {k.lower(): v for k, v in headers.items()}
            payload = Webhook(secret).verify(body, lowered)
            out.append({**payload, "webhook_id": lowered["webhook-id"]})
        return out


async def subscribe(client: httpx.AsyncClient, auth: dict[str, str], url: str,
                    **fields: Any) -> dict[str, Any]:
    response = await client.post("/webhooks", json={"url": url, **fields}, headers=auth)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["secret"].startswith("whsec_")
    assert "secret" not in (await client.get(f"/webhooks/{created['id']}", headers=auth)).json()
    return created


def types(receiver: Receiver, secret: str, subject: int | None = None) -> list[str]:
    return [e["type"] for e in receiver.events(secret)
            if subject is None or (e["data"] or {}).get("id") == subject]
