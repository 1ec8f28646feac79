"""The spec's SMS example, end to end: HTTP API -> PostgreSQL -> dispatcher ->
gateway Asterisk (ARI) -> SIP MESSAGE over the trunk -> carrier Asterisk."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from sandbox.carrier_logs import received_sms
from sandbox.instances import Instance

from .conftest import API, wait_for

PHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
SPEC = {
    "from": "+46736265400",
    "to": "+46736265449",
    "message": "This is an sms message.",
    "repeat": 10,
    "repeat_interval": 1,  # one test minute (AMIVONO_MINUTE_SECONDS=1)
}


def arrivals(carrier: Instance, message_id: int) -> list[dict[str, Any]]:
    return [m for m in received_sms(carrier) if m["message_id"] == str(message_id)]


async def send(client: httpx.AsyncClient, auth: dict[str, str], **changes: Any) -> dict[str, Any]:
    response = await client.post("/messages/sms", json={**SPEC, **changes}, headers=auth)
    assert response.status_code == 201, response.text
    return response.json()


async def test_spec_example_repeats_until_the_link_is_clicked(
    client, auth, carrier, gateway, dispatcher
):
    console_log = gateway.dir / "log" / "messages.log"
    console_start = console_log.stat().st_size
    response = await client.post("/messages/sms", json=SPEC, headers=auth)
    assert response.status_code == 201, response.text
    sms = response.json()
    assert response.headers["location"] == f"{API}/messages/sms/{sms['id']}"
    assert response.headers["x-ratelimit-limit"] == "5000"
    assert response.headers["x-ratelimit-remaining"] == "4999"
    assert sms["from"] == SPEC["from"] and sms["to"] == SPEC["to"]
    assert sms["message"].startswith(f"This is an sms message. {API}/l/")
    assert sms["repeat"] == 9 and sms["repeat_interval"] == 1
    assert sms["last_sent_at"] is None and sms["status"] == "queued"
    assert sms["created_at"].endswith("Z") and sms["encoding"] == "GSM-7"
    assert sms["segments"] == 1

    # The phone gets the message with its link, then again a minute later.
    got = await wait_for(lambda: len(arrivals(carrier, sms["id"])) >= 2, 10, what="two arrivals")
    assert got
    received = arrivals(carrier, sms["id"])
    assert [m["body"] for m in received[:2]] == [sms["message"]] * 2
    assert received[0]["from"] == SPEC["from"] and received[0]["to"] == SPEC["to"]

    # The person opens the link: the repeats stop.
    link = sms["message"].rsplit(" ", 1)[1]
    async with httpx.AsyncClient() as phone:
        page = await phone.get(link, headers={"User-Agent": PHONE_UA})
    assert page.status_code == 200 and "will not receive this message again" in page.text
    clicked = (await client.get(f"/messages/sms/{sms['id']}", headers=auth)).json()
    assert clicked["status"] == "clicked" and clicked["clicked_at"] is not None
    assert clicked["repeat"] == 0 and clicked["next_send_at"] is None
    count = len(arrivals(carrier, sms["id"]))
    await asyncio.sleep(2.5)  # two and a half repeat intervals
    final = (await client.get(f"/messages/sms/{sms['id']}", headers=auth)).json()
    assert len(arrivals(carrier, sms["id"])) == count == final["sent_count"]
    # Handed to the trunk, then reported delivered by the carrier (issue 8).
    assert [a["outcome"] for a in final["attempts"]] == ["delivered"] * count

    # Staff on the gateway console saw one line per send, with id and destination.
    with console_log.open() as f:
        f.seek(console_start)
        console = f.read()
    lines = [ln for ln in console.splitlines() if f"'message {sms['id']} attempt" in ln]
    assert len(lines) == count and all("SMS to +46736265449" in ln for ln in lines)


async def test_preview_fetchers_do_not_count_as_a_click(client, auth, carrier, dispatcher):
    sms = await send(client, auth, repeat=3)
    link = sms["message"].rsplit(" ", 1)[1]
    async with httpx.AsyncClient() as bots:
        for agent in (
            "WhatsApp/2.23.20.0 A",
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "facebookexternalhit/1.1",
            "TelegramBot (like TwitterBot)",
            "Twitterbot/1.0",
            "Mozilla/5.0 (compatible; Discordbot/2.0)",
        ):
            page = await bots.get(link, headers={"User-Agent": agent})
            assert page.status_code == 200 and "Open this link" in page.text
        assert (await bots.head(link, headers={"User-Agent": PHONE_UA})).status_code == 200
        prefetch = await bots.get(link, headers={"User-Agent": PHONE_UA, "Sec-Purpose": "prefetch"})
        assert "Open this link" in prefetch.text
    await wait_for(lambda: len(arrivals(carrier, sms["id"])) == 3, 10, what="all three sends")
    done = await wait_for(
        lambda: _status(client, auth, sms["id"], "completed"), 5, what="completed"
    )
    assert done["clicked_at"] is None and done["sent_count"] == 3 and done["repeat"] == 0


async def _status(client, auth, message_id: int, status: str) -> dict[str, Any] | None:
    body = (await client.get(f"/messages/sms/{message_id}", headers=auth)).json()
    return body if body["status"] == status else None


async def test_unknown_link_is_a_404_page(client, api):
    async with httpx.AsyncClient() as phone:
        for token in ("AAAAAAAAAAA", "short", "../../etc/x"):
            page = await phone.get(f"{api}/l/{token}", headers={"User-Agent": PHONE_UA})
            assert page.status_code == 404


async def test_cancel_stops_the_repeats(client, auth, carrier, dispatcher):
    sms = await send(client, auth, repeat=5)
    await wait_for(lambda: arrivals(carrier, sms["id"]), 10, what="first arrival")
    response = await client.delete(f"/messages/sms/{sms['id']}", headers=auth)
    assert response.status_code == 200, response.text
    canceled = response.json()
    assert canceled["status"] == "canceled" and canceled["repeat"] == 0
    assert canceled["canceled_at"] is not None
    await asyncio.sleep(2.5)
    final = (await client.get(f"/messages/sms/{sms['id']}", headers=auth)).json()
    got = len(arrivals(carrier, sms["id"]))
    # A send already in flight when DELETE landed may still finish; nothing after.
    assert got == final["sent_count"] and 1 <= got <= canceled["sent_count"] + 1 < 5
    again = await client.delete(f"/messages/sms/{sms['id']}", headers=auth)
    assert again.status_code == 200 and again.json()["status"] == "canceled"


async def test_single_sms_without_repeat_has_no_link(client, auth, carrier, dispatcher):
    sms = await send(
        client, auth, repeat=None, repeat_interval=None, message="Grüße {from} [Amivono] €5 ~ ok"
    )
    assert sms["message"] == "Grüße {from} [Amivono] €5 ~ ok"
    assert sms["repeat"] == 0 and sms["repeat_interval"] is None
    received = await wait_for(lambda: arrivals(carrier, sms["id"]), 10, what="arrival")
    assert received[0]["body"] == sms["message"]
    done = await wait_for(
        lambda: _status(client, auth, sms["id"], "completed"), 5, what="completed"
    )
    assert done["sent_count"] == 1 and done["last_sent_at"] is not None
    completed = await client.delete(f"/messages/sms/{sms['id']}", headers=auth)
    assert completed.status_code == 409
