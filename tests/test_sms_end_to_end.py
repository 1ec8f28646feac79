"""The spec's SMS example, end to end: HTTP API -> PostgreSQL -> dispatcher ->
gateway Asterisk (ARI) -> SIP MESSAGE over the trunk -> carrier Asterisk."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest

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


async def attempt_times(pool, message_id: int) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT send_number, started_at, finished_at, outcome FROM sms_attempts "
        "WHERE message_id = $1 ORDER BY id", message_id)


def gaps(attempts: list[asyncpg.Record]) -> list[float]:
    """Seconds between consecutive attempts' starts (the database's clock).
    The next repeat is due repeat_interval after a send has finished, and a
    send finishes after it started: so at least repeat_interval, however
    slow the send or the machine."""
    return [(b["started_at"] - a["started_at"]).total_seconds()
            for a, b in zip(attempts, attempts[1:], strict=False)]


async def test_spec_example_repeats_until_the_link_is_clicked(
    client, auth, pool, carrier, gateway, dispatcher
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
    # A minute (one test second) apart, not all at once.
    sent = await attempt_times(pool, sms["id"])
    assert len(sent) >= 2 and min(gaps(sent)) >= 0.95, gaps(sent)

    # The person opens the link: the repeats stop.
    link = sms["message"].rsplit(" ", 1)[1]
    async with httpx.AsyncClient() as phone:
        page = await phone.get(link, headers={"User-Agent": PHONE_UA})
    assert page.status_code == 200 and "will not receive this message again" in page.text
    clicked = (await client.get(f"/messages/sms/{sms['id']}", headers=auth)).json()
    assert clicked["status"] == "clicked" and clicked["clicked_at"] is not None
    assert clicked["repeat"] == 0 and clicked["next_send_at"] is None
    # Sends were still to come when the link was opened: the click stopped them.
    assert clicked["sent_count"] < SPEC["repeat"], clicked
    await asyncio.sleep(2.5)  # two and a half repeat intervals: nothing more is claimed
    final = (await client.get(f"/messages/sms/{sms['id']}", headers=auth)).json()
    count = final["sent_count"]
    # A repeat in flight when the link was opened may still finish; none after it.
    assert clicked["sent_count"] <= count <= clicked["sent_count"] + 1
    await wait_for(lambda: len(arrivals(carrier, sms["id"])) >= count, 5, what="arrivals")
    assert len(arrivals(carrier, sms["id"])) == count
    history = await attempt_times(pool, sms["id"])
    assert [a["send_number"] for a in history] == list(range(1, count + 1))
    assert min(gaps(history)) >= 0.95, gaps(history)
    # Handed to the trunk, then reported delivered by the carrier (issue 8).
    reported = await wait_for(lambda: _outcomes(client, auth, sms["id"], count), 5,
                              what="delivery reports")
    assert reported == ["delivered"] * count

    # Staff on the gateway console saw one line per send, with id and
    # destination. Lines that come while the previous one is on its way share
    # the next "Setting global variable" line, joined by " | ".
    def console_lines() -> list[str]:
        with console_log.open() as f:
            f.seek(console_start)
            console = f.read()
        shown = [part for ln in console.splitlines() if "'AMIVONO_SMS' to '" in ln
                 for part in ln.split("'AMIVONO_SMS' to '", 1)[1].split(" | ")]
        return [part for part in shown if part.startswith(f"message {sms['id']} attempt")]

    lines = await wait_for(lambda: len(console_lines()) >= count and console_lines(), 5,
                           what="console lines")
    assert len(lines) == count and all("SMS to +46736265449" in ln for ln in lines)


async def _outcomes(client, auth, message_id: int, count: int) -> list[str] | None:
    body = (await client.get(f"/messages/sms/{message_id}", headers=auth)).json()
    outcomes = [a["outcome"] for a in body["attempts"]]
    return outcomes if len(outcomes) == count and "sent" not in outcomes else None


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


async def test_unknown_link_is_a_404_page(client, auth, api, pool):
    sms = await send(client, auth, repeat=2)
    token = sms["message"].rsplit("/", 1)[1]
    # Each target goes on the wire as written ("target"): httpx would remove
    # the dot segments itself and only ever send /etc/x.
    async with httpx.AsyncClient(base_url=api) as phone:
        for target in ("/l/AAAAAAAAAAA", "/l/short", "/l/../../etc/x", "/l/..%2F..%2Fetc%2Fx",
                       "/l/%2e%2e%2F%2e%2e%2Fetc%2Fx", "/l/..", "/l/%2e%2e", "/l/.", "/l/",
                       f"/l/{token}/", f"/l/{token}%2F", f"/l/{token}/..", f"/l/%2e/{token}",
                       f"/l/..%2Fl%2F{token}", f"/x/..%2Fl%2F{token}"):
            page = await phone.get("/", headers={"User-Agent": PHONE_UA},
                                   extensions={"target": target.encode()})
            assert (page.status_code, page.headers.get("location")) == (404, None), target
    # None of them reached the real link next to them.
    assert await pool.fetchval("SELECT clicked_at FROM sms_messages WHERE id = $1",
                               sms["id"]) is None
    await client.delete(f"/messages/sms/{sms['id']}", headers=auth)  # no sends left over


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


@pytest.mark.parametrize("text", ["Line one\nline two\n", "Ends in CRLF\r\n", "Tab end\t",
                                  "\nLeading break"])
async def test_the_text_sent_is_the_text_stored(client, auth, carrier, dispatcher, text):
    """Trailing line breaks do not survive the SIP path; the API removes them
    before storing, so what GET shows is byte for byte what the phone gets."""
    sms = await send(client, auth, repeat=None, repeat_interval=None, message=text)
    received = await wait_for(lambda: arrivals(carrier, sms["id"]), 10, what="arrival")
    stored = (await client.get(f"/messages/sms/{sms['id']}", headers=auth)).json()["message"]
    assert received[0]["body"] == stored == sms["message"]
