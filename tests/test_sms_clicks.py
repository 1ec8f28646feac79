"""The tracked link counts one person's first click, nothing else; and the
limit on repeat_interval. No dispatcher is needed: a click is recorded on the
message whether or not it was sent yet."""

from __future__ import annotations

from typing import Any

import httpx

PHONE_UA = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/125.0 Mobile Safari/537.36"
)
SMS = {"from": "+46736265400", "to": "+46736265449", "message": "Click test",
       "repeat": 5, "repeat_interval": 60}


async def post(client, auth, **changes: Any) -> dict[str, Any]:
    response = await client.post("/messages/sms", json={**SMS, **changes}, headers=auth)
    assert response.status_code == 201, response.text
    return response.json()


async def stored(pool, message_id: int):
    return await pool.fetchrow(
        "SELECT clicked_at, updated_at, due_at FROM sms_messages WHERE id = $1", message_id)


def link_of(sms: dict[str, Any]) -> str:
    return sms["message"].rsplit(" ", 1)[1]


async def test_only_the_first_click_counts(client, auth, pool):
    sms = await post(client, auth)
    async with httpx.AsyncClient() as phone:
        first = await phone.get(link_of(sms), headers={"User-Agent": PHONE_UA})
        assert first.status_code == 200 and "will not receive" in first.text
        once = await stored(pool, sms["id"])
        assert once["clicked_at"] is not None and once["due_at"] is None
        second = await phone.get(link_of(sms), headers={"User-Agent": PHONE_UA})
        assert second.status_code == 200 and "will not receive" in second.text
    twice = await stored(pool, sms["id"])
    # The moment of the first click stays (to the microsecond), as does the row.
    assert (twice["clicked_at"], twice["updated_at"]) == (once["clicked_at"], once["updated_at"])
    body = (await client.get(f"/messages/sms/{sms['id']}", headers=auth)).json()
    assert body["status"] == "clicked" and body["repeat"] == 0


async def test_no_user_agent_is_not_a_click(client, auth, pool):
    sms = await post(client, auth)
    async with httpx.AsyncClient() as fetcher:
        empty = await fetcher.get(link_of(sms), headers={"User-Agent": ""})
        request = fetcher.build_request("GET", link_of(sms))
        del request.headers["User-Agent"]
        absent = await fetcher.send(request)
    for page in (empty, absent):
        assert page.status_code == 200 and "Open this link" in page.text
    assert empty.request.headers["user-agent"] == ""
    assert "user-agent" not in absent.request.headers
    assert (await stored(pool, sms["id"]))["clicked_at"] is None
    await _a_person_still_can(sms, pool)


async def test_a_prefetch_is_not_a_click(client, auth, pool):
    sms = await post(client, auth)
    async with httpx.AsyncClient() as browser:
        for header in ({"Purpose": "prefetch"}, {"Purpose": "Prefetch"},
                       {"Sec-Purpose": "prefetch;prerender"}):
            page = await browser.get(link_of(sms), headers={"User-Agent": PHONE_UA, **header})
            assert page.status_code == 200 and "Open this link" in page.text, header
    assert (await stored(pool, sms["id"]))["clicked_at"] is None
    await _a_person_still_can(sms, pool)


async def _a_person_still_can(sms: dict[str, Any], pool) -> None:
    """The same link then counts for a person: the requests above reached it."""
    async with httpx.AsyncClient() as phone:
        page = await phone.get(link_of(sms), headers={"User-Agent": PHONE_UA})
    assert page.status_code == 200 and "will not receive" in page.text
    assert (await stored(pool, sms["id"]))["clicked_at"] is not None


async def test_repeat_interval_is_at_most_a_week(client, auth):
    too_long = await client.post("/messages/sms", headers=auth,
                                  json={**SMS, "repeat": 2, "repeat_interval": 10081})
    assert too_long.status_code == 422, too_long.text
    errors = too_long.json()["errors"]
    assert [(e["field"], e["code"]) for e in errors] == [("repeat_interval", "out_of_range")]
    week = await post(client, auth, repeat=2, repeat_interval=10080)
    assert week["repeat_interval"] == 10080
    await client.delete(f"/messages/sms/{week['id']}", headers=auth)
