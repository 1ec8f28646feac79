"""Webhooks under faults and with their own dispatchers (so no other
dispatcher of the module takes their deliveries): SIGKILL of the delivery
worker mid-delivery, egress refused at delivery time, a hostile endpoint
(DNS rebinding, a redirect, an endless answer), and calls."""

from __future__ import annotations

import asyncio
import secrets
import signal
import socket
import time
from typing import Any

import pytest
from aiohttp import web

from service.delivery import webhook_sender
from service.domain.egress import allowed_networks

from .audio import tone
from .conftest import start_dispatcher, wait_for
from .webhook_receiver import subscribe, types

FROM = "+46736265400"
BUSY = "+46700000017"


async def test_sigkill_of_the_delivery_worker_mid_delivery_loses_nothing(
        client, auth, db, sandbox, receiver):
    hook = await subscribe(client, auth, receiver.url, events=["sms.sent"])
    proc = start_dispatcher(f"hooks-kill-{time.time_ns()}")
    heir = None
    try:
        await wait_for(lambda: "sms: connected: sending" in proc.log(), 30, what="dispatcher")
        receiver.delay = 20.0  # the first delivery hangs until the worker is killed
        sms = (await client.post("/messages/sms", headers=auth, json={
            "from": FROM, "to": "+46736265449", "message": "kill me"})).json()
        await wait_for(lambda: receiver.requests, 20, what="the delivery in flight")
        await asyncio.sleep(2.0)  # leased: no one takes it again while it is in flight
        assert len(receiver.requests) == 1
        proc.signal(signal.SIGKILL)
        proc.wait()
        receiver.delay = 0.0
        # The lease runs out (the total timeout plus a margin) and another takes it.
        heir = start_dispatcher(f"hooks-heir-{time.time_ns()}")
        await wait_for(lambda: len(receiver.requests) >= 2, 60, what="delivered again")
        events = receiver.events(hook["secret"])
        assert {e["webhook_id"] for e in events} == {events[0]["webhook_id"]}
        assert events[-1]["data"]["id"] == sms["id"]

        async def recorded() -> Any:
            rows = (await client.get(f"/webhooks/{hook['id']}/deliveries", headers=auth)).json()
            return rows if rows and rows[0]["status"] == "succeeded" else None

        rows = await wait_for(recorded, 10, what="recorded as succeeded")
        assert len(rows) == 1 and rows[0]["attempts"] == 2, rows
    finally:
        proc.stop()
        if heir is not None:
            heir.stop()


async def test_private_addresses_are_refused_at_creation_and_at_delivery(
        client, auth, db, sandbox, receiver):
    for url in ("http://10.0.0.1/hook", "http://169.254.169.254/latest/meta-data",
                "http://[::1]:9/", "http://localhost.invalid/"):
        response = await client.post("/webhooks", json={"url": url}, headers=auth)
        assert response.status_code == 422, (url, response.text)
        assert response.json()["errors"][0]["field"] == "url"
    # Allowed by the API (127.0.0.0/8 in the tests) but not by this dispatcher.
    hook = await subscribe(client, auth, receiver.url)
    moved = await client.patch(f"/webhooks/{hook['id']}", json={"url": "http://10.0.0.1/hook"},
                               headers=auth)
    assert moved.status_code == 422, moved.text  # and by PATCH
    proc = start_dispatcher(f"hooks-strict-{time.time_ns()}",
                            AMIVONO_WEBHOOK_ALLOWED_NETWORKS="")
    try:
        await client.post(f"/webhooks/{hook['id']}/test", headers=auth)

        async def refused() -> Any:
            rows = (await client.get(f"/webhooks/{hook['id']}/deliveries", headers=auth)).json()
            return rows if rows and (rows[0]["last_error"] or "").startswith("refused") else None

        rows = await wait_for(refused, 20, what="refused at delivery")
        assert "127.0.0.1 is loopback" in rows[0]["last_error"]
        assert receiver.requests == []
    finally:
        proc.stop()


async def test_a_delivery_connects_to_the_checked_address_follows_no_redirect_reads_64_kib(
        monkeypatch: pytest.MonkeyPatch):
    hits: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        hits.append("hook")
        raise web.HTTPFound("/elsewhere")

    async def elsewhere(request: web.Request) -> web.Response:
        hits.append("elsewhere")
        return web.Response(text="ok")

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            while True:
                await response.write(b"x" * 65536)
        except ConnectionError:
            return response

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_route("*", "/elsewhere", elsewhere)
    app.router.add_post("/endless", endless)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    # DNS rebinding: the name is 127.0.0.1 (allowed) when checked, then
    # 127.0.0.2 (refused; nothing listens there) for any later lookup.
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    answers = iter(["127.0.0.1"] + ["127.0.0.2"] * 10)

    async def rebinding(host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        if host != "hooks.test":
            return await real(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(loop, "getaddrinfo", rebinding)
    allowed = allowed_networks("127.0.0.1/32")
    try:
        sent = await webhook_sender.post(f"http://hooks.test:{port}/hook", b"{}", {}, allowed)
        assert (sent.ok, sent.status_code, hits) == (False, 302, ["hook"]), sent
        answers = iter(["127.0.0.1"] + ["127.0.0.2"] * 10)
        sent = await webhook_sender.post(f"http://hooks.test:{port}/endless", b"{}", {}, allowed)
        assert sent.ok and sent.status_code == 200, sent  # read 64 KiB, then let go
    finally:
        await runner.cleanup()


async def test_a_call_is_answered_and_completed_and_busy_fails(client, auth, carrier, receiver,
                                                               db, sandbox):
    proc = start_dispatcher(f"hooks-voice-{time.time_ns()}", AMIVONO_DIAL_TIMEOUT="4")
    try:
        await wait_for(lambda: "voice: connected: sending" in proc.log(), 20, what="dispatcher")
        hook = await subscribe(client, auth, receiver.url,
                               events=["voice.answered", "voice.completed", "voice.failed"])
        put = await client.put("/files/beep.wav", content=tone(700, 1.0), headers=auth)
        assert put.status_code == 201, put.text
        ok = (await client.post("/messages/voice", headers=auth, json={
            "from": FROM, "to": f"+4673626{secrets.randbelow(10**4):04d}",
            "file": "beep.wav"})).json()
        busy = (await client.post("/messages/voice", headers=auth, json={
            "from": FROM, "to": BUSY, "file": "beep.wav"})).json()
        await wait_for(lambda: types(receiver, hook["secret"], ok["id"]) == [
            "voice.answered", "voice.completed"], 30, what="answered, completed")
        await wait_for(lambda: types(receiver, hook["secret"], busy["id"]) == ["voice.failed"],
                       30, what="busy fails")
        failed = [e for e in receiver.events(hook["secret"]) if e["data"]["id"] == busy["id"]]
        assert failed[0]["data"]["outcome"] == "busy" and failed[0]["data"]["cause"] == 17
    finally:
        proc.stop()
