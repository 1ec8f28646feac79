"""Signed status webhooks from the outbox, to a real HTTP receiver on loopback,
through both real Asterisks. Every delivery is verified with the reference
`standardwebhooks` library, never with our own signing code."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import asyncpg
import httpx

from sandbox.carrier_logs import received_sms
from service.store import account_numbers
from service.store.api_keys import create_key
from service.store.queries import queries

from .conftest import wait_for
from .sip_message import SipMessage
from .webhook_receiver import subscribe, types

FROM = "+46736265400"
BUSY = "+46700000017"
PHONE_UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148 Safari/604.1"


async def test_the_spec_sms_is_sent_delivered_and_clicked(client, auth, carrier, dispatcher,
                                                          receiver):
    hook = await subscribe(client, auth, receiver.url)
    sms = (await client.post("/messages/sms", headers=auth, json={
        "from": FROM, "to": "+46736265449", "message": "This is an sms message.",
        "repeat": 10, "repeat_interval": 5})).json()
    await wait_for(lambda: {"sms.sent", "sms.delivered"} <= set(
        types(receiver, hook["secret"], sms["id"])), 20, what="sent and delivered")
    link = sms["message"].rsplit(" ", 1)[1]
    async with httpx.AsyncClient() as phone:
        assert (await phone.get(link, headers={"User-Agent": PHONE_UA})).status_code == 200
    await wait_for(lambda: "sms.clicked" in types(receiver, hook["secret"], sms["id"]), 15,
                   what="clicked")
    events = [e for e in receiver.events(hook["secret"]) if e["data"]["id"] == sms["id"]]
    order = [e["type"] for e in events]
    assert order.index("sms.sent") < order.index("sms.clicked")
    clicked = events[order.index("sms.clicked")]["data"]
    # The resource as its GET returns it.
    assert clicked["status"] == "clicked" and clicked["url"] == sms["url"]
    assert clicked["attempts"][0]["outcome"] in ("sent", "delivered")
    assert len({e["webhook_id"] for e in events}) == len(events)  # one id per event




async def test_a_receiver_down_for_a_while_gets_every_event_with_the_same_ids(
        client, auth, carrier, dispatcher, receiver):
    hook = await subscribe(client, auth, receiver.url, events=["sms.sent"])
    receiver.status = 503
    sent = [(await client.post("/messages/sms", headers=auth, json={
        "from": FROM, "to": "+46736265449", "message": f"down {i}",
        **({"repeat": 1, "repeat_interval": 60} if i == 0 else {})})).json() for i in range(3)]
    await wait_for(lambda: len(receiver.requests) >= 6, 20, what="failed attempts")
    await receiver.stop()  # now connections are refused
    # The first SMS changes (clicked) between attempts: its retries still send
    # the body of the first attempt.
    async with httpx.AsyncClient() as phone:
        link = sent[0]["message"].rsplit(" ", 1)[1]
        assert (await phone.get(link, headers={"User-Agent": PHONE_UA})).status_code == 200
    await asyncio.sleep(1.0)
    receiver.status = 200
    await receiver.start()  # the same port
    ids = {s["id"] for s in sent}

    def all_ok() -> bool:
        return ids <= {e["data"]["id"] for e in receiver.events(hook["secret"])
                       if e["type"] == "sms.sent"}

    await wait_for(all_ok, 30, what="every event after the outage")
    by_id: dict[str, int] = {}
    bodies: dict[str, set[bytes]] = {}
    for headers, body in receiver.requests:
        webhook_id = {k.lower(): v for k, v in headers.items()}["webhook-id"]
        by_id[webhook_id] = by_id.get(webhook_id, 0) + 1
        bodies.setdefault(webhook_id, set()).add(body)
    # Three events, each tried more than once under its own stable id, and
    # every retry the very bytes of the first attempt.
    assert len(by_id) == 3 and min(by_id.values()) >= 2, by_id
    assert all(len(b) == 1 for b in bodies.values()), bodies
    async def recorded() -> Any:
        rows = (await client.get(f"/webhooks/{hook['id']}/deliveries", headers=auth)).json()
        return rows if {d["status"] for d in rows} == {"succeeded"} else None

    deliveries = await wait_for(recorded, 10, what="recorded as succeeded")
    assert all(d["attempts"] >= 2 and d["last_status_code"] == 200 for d in deliveries)






async def test_test_event_deliveries_and_retry(client, auth, dispatcher, receiver):
    hook = await subscribe(client, auth, receiver.url, description="ops")
    queued = await client.post(f"/webhooks/{hook['id']}/test", headers=auth)
    assert queued.status_code == 202
    await wait_for(lambda: receiver.requests, 15, what="the test event")
    event = receiver.events(hook["secret"])[0]
    assert event["type"] == "webhook.test" and event["data"]["endpoint_id"] == hook["id"]
    delivery = (await client.get(f"/webhooks/{hook['id']}/deliveries", headers=auth)).json()[0]
    assert delivery["webhook_id"] == event["webhook_id"] and delivery["status"] == "succeeded"
    again = await client.post(
        f"/webhooks/{hook['id']}/deliveries/{delivery['id']}/retry", headers=auth)
    assert again.status_code == 202
    await wait_for(lambda: len(receiver.requests) == 2, 15, what="sent again")
    assert receiver.events(hook["secret"])[1]["webhook_id"] == event["webhook_id"]
    # PATCH: off, then nothing is sent (a delivery fails, saying why); DELETE: gone.
    off = await client.patch(f"/webhooks/{hook['id']}", json={"enabled": False}, headers=auth)
    assert off.json()["enabled"] is False and off.json()["disabled_reason"]
    queued = (await client.post(f"/webhooks/{hook['id']}/test", headers=auth)).json()

    async def ended() -> Any:
        rows = (await client.get(f"/webhooks/{hook['id']}/deliveries", headers=auth)).json()
        row = next(r for r in rows if r["id"] == queued["id"])
        return row if row["status"] != "pending" else None

    row = await wait_for(ended, 15, what="the delivery to a disabled endpoint to end")
    assert row["status"] == "failed" and row["last_error"] == "the endpoint is disabled", row
    assert len(receiver.requests) == 2
    assert (await client.delete(f"/webhooks/{hook['id']}", headers=auth)).status_code == 204
    assert (await client.get(f"/webhooks/{hook['id']}", headers=auth)).status_code == 404


async def test_another_tenants_webhooks_are_invisible(client, auth, new_key, receiver, db):
    hook = await subscribe(client, auth, receiver.url)
    other = {"Authorization": f"Bearer {await new_key()}"}
    base = f"/webhooks/{hook['id']}"
    delivery = (await client.post(f"{base}/test", headers=auth)).json()
    assert (await client.get("/webhooks", headers=other)).json() == []
    for method, path in (("GET", base), ("PATCH", base), ("DELETE", base),
                         ("POST", f"{base}/test"), ("GET", f"{base}/deliveries"),
                         ("POST", f"{base}/deliveries/{delivery['id']}/retry")):
        response = await client.request(method, path, headers=other,
                                        json={} if method == "PATCH" else None)
        assert response.status_code == 404, (method, path, response.text)
    assert (await client.get(base, headers=auth)).status_code == 200


async def account(pool: asyncpg.Pool) -> tuple[int, dict[str, str]]:
    name = f"hooks-{time.time_ns()}"
    key = await create_key(pool, name)
    return await queries.accounts.id_by_name(pool, name=name), {
        "Authorization": f"Bearer {key}"}


async def test_inbound_and_opt_out_events(client, pool, dispatcher, receiver, settings):
    account_id, auth = await account(pool)
    number = f"+4673{secrets.randbelow(10**7):07d}"
    await account_numbers.add(pool, account_id, number)
    hook = await subscribe(client, auth, receiver.url,
                           events=["inbound.received", "optout.changed"])
    phone = f"+4673{secrets.randbelow(10**7):07d}"
    gateway = ("127.0.0.1", settings.sip_port)
    assert SipMessage(gateway, phone, number, "STOP").send(
        settings.trunk_user, settings.trunk_password) == 202
    await wait_for(lambda: len(receiver.requests) >= 2, 15, what="two events")
    by_type = {e["type"]: e["data"] for e in receiver.events(hook["secret"])}
    assert by_type["inbound.received"]["kind"] == "stop"
    assert by_type["inbound.received"]["from"] == phone
    assert by_type["optout.changed"] == {
        "phone": phone, "opted_out": True, "inbound_id": by_type["inbound.received"]["id"],
        "changed_at": by_type["optout.changed"]["changed_at"]}


async def test_a_rolled_back_change_emits_nothing_and_a_committed_one_does(pool, db):
    account_id, _ = await account(pool)
    other_account, _ = await account(pool)

    async def create(owner: int, events: list[str]) -> asyncpg.Record:
        return await queries.webhook_endpoints.create(
            pool, account_id=owner, url="https://hooks.example/x", description="",
            events=events, secret="whsec_" + "A" * 32)

    endpoint = await create(account_id, [])
    # None of these may get the event: another account's, one that takes
    # other events, a disabled one.
    others = [await create(other_account, []), await create(account_id, ["sms.sent"]),
              await create(account_id, [])]
    await queries.webhook_endpoints.update(
        pool, id=others[2]["id"], account_id=account_id, url=None, description=None,
        events=None, enabled=False)
    message_id = await pool.fetchval(
        "INSERT INTO sms_messages (account_id, from_number, to_number, text, body, encoding,"
        " segments, repeat_total) VALUES ($1, $2, $2, 'x', 'x', 'GSM-7', 1, 1) RETURNING id",
        account_id, FROM)

    async def deliveries() -> list[asyncpg.Record]:
        return await pool.fetch(
            "SELECT * FROM webhook_deliveries WHERE endpoint_id = ANY($1::bigint[])",
            [endpoint["id"], *(e["id"] for e in others)])

    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("UPDATE sms_messages SET canceled_at = now() WHERE id = $1",
                           message_id)
        await tx.rollback()
    assert await deliveries() == []
    await pool.execute("UPDATE sms_messages SET canceled_at = now() WHERE id = $1", message_id)
    rows = await deliveries()
    assert [(r["endpoint_id"], r["event_type"], r["subject_id"]) for r in rows] == [
        (endpoint["id"], "sms.canceled", message_id)]


async def test_a_black_hole_endpoint_does_not_slow_sends(client, auth, carrier, dispatcher,
                                                         receiver):
    """An endpoint that accepts connections and never answers: every SMS is
    still sent while its deliveries hang, and another endpoint still gets
    every event at once (the black hole holds only its own slots)."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # never answered

    hole = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = hole.sockets[0].getsockname()[1]
    try:
        hook = await subscribe(client, auth, f"http://127.0.0.1:{port}/",
                               events=["sms.sent"])
        healthy = await subscribe(client, auth, receiver.url, events=["sms.sent"])
        to = f"+4673{secrets.randbelow(10**7):07d}"
        for i in range(20):
            response = await client.post("/messages/sms", headers=auth, json={
                "from": FROM, "to": to, "message": f"hole {i}"})
            assert response.status_code == 201
        await wait_for(lambda: len([m for m in received_sms(carrier) if m["to"] == to]) == 20,
                       20, what="all 20 at the carrier")
        await wait_for(lambda: len(types(receiver, healthy["secret"])) == 20, 10,
                       what="every event at the healthy endpoint")
        rows = (await client.get(f"/webhooks/{hook['id']}/deliveries?per_page=100",
                                 headers=auth)).json()
        assert rows and not any(r["status"] == "succeeded" for r in rows)
    finally:
        for writer in held:
            writer.close()
        hole.close()
