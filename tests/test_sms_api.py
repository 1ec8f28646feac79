"""The SMS resource over HTTP: validation, auth, tenants, listing, errors."""

from __future__ import annotations

import pytest

from .conftest import TEST_ENV

GOOD = {"from": "+46736265400", "to": "+46736265449", "message": "Hi"}

# " " + "<link base>/" + 11-character token
LINK_COST = 1 + len(TEST_ENV["AMIVONO_LINK_BASE_URL"] + "/") + 11


def field_errors(response) -> list[tuple[str, str]]:
    body = response.json()
    assert body["message"] == "Validation Failed"
    assert all(e["resource"] == "Sms" for e in body["errors"])
    return [(e["field"], e["code"]) for e in body["errors"]]


@pytest.mark.parametrize(
    ("message", "repeat", "ok"),
    [
        ("a" * 160, None, True),
        ("a" * 161, None, False),
        ("€" * 80, None, True),  # extension characters: two septets each
        ("€" * 80 + "a", None, False),
        ("a" * 159 + "€", None, False),
        ("Ж" * 70, None, True),  # UCS-2
        ("Ж" * 71, None, False),
        ("😀" * 35, None, True),  # surrogate pairs: two units each
        ("😀" * 35 + "a", None, False),
        ("a" * (160 - LINK_COST), 3, True),
        ("a" * (161 - LINK_COST), 3, False),
        ("€" * ((160 - LINK_COST) // 2), 3, True),
        ("Ж" * (70 - LINK_COST), 3, True),
        ("Ж" * (71 - LINK_COST), 3, False),
    ],
)
async def test_message_length_limits_at_their_edges(client, auth, message, repeat, ok):
    body = {**GOOD, "message": message}
    if repeat:
        body["repeat"] = repeat
    response = await client.post("/messages/sms", json=body, headers=auth)
    if ok:
        assert response.status_code == 201, response.text
        assert response.json()["segments"] == 1
    else:
        assert response.status_code == 422, response.text
        assert field_errors(response) == [("message", "too_long")]


async def test_too_long_names_the_exact_limit_and_encoding(client, auth):
    response = await client.post(
        "/messages/sms", json={**GOOD, "message": "a" * 130, "repeat": 2}, headers=auth
    )
    text = response.json()["errors"][0]["message"]
    assert f"at most {160 - LINK_COST} septets" in text and "GSM-7" in text
    assert "with repeat" in text
    response = await client.post("/messages/sms", json={**GOOD, "message": "Ж" * 71}, headers=auth)
    assert "at most 70 UCS-2 characters" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    "number",
    [
        "+4673&PJSIP/x",
        "+46736265449@10.0.0.1",
        "+4673/6265449",
        "sip:+46736265449",
        "+٤٦٧٣٦٢٦٥٤٤٩",
        "+46736265449\r\nAction: Originate",
        "46736265449",
        "+46 736265449",
        "",
        46736265449,
    ],
)
async def test_injection_attempts_in_numbers_are_refused(client, auth, pool, number):
    before = await pool.fetchval("SELECT count(*) FROM sms_messages")
    for field in ("to", "from"):
        response = await client.post("/messages/sms", json={**GOOD, field: number}, headers=auth)
        assert response.status_code == 422, response.text
        assert (field, "invalid") in field_errors(response)
    assert await pool.fetchval("SELECT count(*) FROM sms_messages") == before


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b'{"from": "+4673",}', b"\xff\xfe"])
async def test_malformed_json_is_400(client, auth, raw):
    response = await client.post("/messages/sms", content=raw, headers=auth)
    assert response.status_code == 400
    assert response.json() == {"message": "Problems parsing JSON"}


async def test_json_that_is_not_an_object_is_422(client, auth):
    response = await client.post("/messages/sms", json=["+46736265400"], headers=auth)
    assert response.status_code == 422


async def test_unknown_and_missing_fields_are_named(client, auth):
    response = await client.post(
        "/messages/sms", json={"to": "+46736265449", "mesage": "typo", "priority": 1}, headers=auth
    )
    assert response.status_code == 422
    assert sorted(field_errors(response)) == sorted(
        [
            ("mesage", "unknown_field"),
            ("priority", "unknown_field"),
            ("from", "missing_field"),
            ("message", "missing_field"),
        ]
    )


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"repeat": 0}, ("repeat", "out_of_range")),
        ({"repeat": 101}, ("repeat", "out_of_range")),
        ({"repeat": "10"}, ("repeat", "invalid")),
        ({"repeat": 2.5}, ("repeat", "invalid")),
        ({"repeat": True}, ("repeat", "invalid")),
        ({"repeat": 2, "repeat_interval": 0}, ("repeat_interval", "out_of_range")),
        ({"repeat_interval": 5}, ("repeat_interval", "invalid")),
        ({"message": ""}, ("message", "invalid")),
        ({"message": "   "}, ("message", "invalid")),
        ({"message": 42}, ("message", "invalid")),
    ],
)
async def test_bad_field_values(client, auth, changes, error):
    response = await client.post("/messages/sms", json={**GOOD, **changes}, headers=auth)
    assert response.status_code == 422
    assert field_errors(response) == [error]


async def test_repeat_without_interval_takes_the_documented_default(client, auth):
    response = await client.post("/messages/sms", json={**GOOD, "repeat": 2}, headers=auth)
    assert response.status_code == 201
    assert response.json()["repeat_interval"] == 60


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer  x y",
        "Basic dXNlcjpwYXNz",
        "Bearer amv_not-a-real-key",
        "amv_x",
    ],
)
async def test_auth_failures_are_401_json(client, header):
    headers = {} if header is None else {"Authorization": header}
    for method, path in (
        ("POST", "/messages/sms"),
        ("GET", "/messages/sms"),
        ("GET", "/messages/sms/1"),
        ("DELETE", "/messages/sms/1"),
    ):
        response = await client.request(method, path, json=GOOD, headers=headers)
        assert response.status_code == 401, (method, path)
        assert "message" in response.json()
        assert "x-ratelimit-limit" not in response.headers


async def test_revoked_key_is_refused(client, pool, new_key):
    key = await new_key()
    headers = {"Authorization": f"Bearer {key}"}
    assert (await client.get("/messages/sms", headers=headers)).status_code == 200
    await pool.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE key_hash = sha256($1::bytea)", key.encode()
    )
    assert (await client.get("/messages/sms", headers=headers)).status_code == 401


async def test_accounts_cannot_see_or_cancel_each_others_messages(client, new_key):
    alice = {"Authorization": f"Bearer {await new_key('alice')}"}
    bob = {"Authorization": f"Bearer {await new_key('bob')}"}
    created = await client.post("/messages/sms", json={**GOOD, "repeat": 3}, headers=alice)
    message_id = created.json()["id"]

    for method in ("GET", "DELETE"):
        response = await client.request(method, f"/messages/sms/{message_id}", headers=bob)
        assert response.status_code == 404, method
        assert response.json() == {"message": "Not Found"}
    assert (await client.get("/messages/sms", headers=bob)).json() == []
    mine = await client.get(f"/messages/sms/{message_id}", headers=alice)
    assert mine.status_code == 200 and mine.json()["status"] != "canceled"
    # The link token is not exposed to anyone but in the message itself.
    assert "link_token" not in mine.json()


async def test_list_is_newest_first_and_paginated_with_link(client, auth):
    ids = []
    for i in range(5):
        response = await client.post(
            "/messages/sms", json={**GOOD, "message": f"n{i}"}, headers=auth
        )
        ids.append(response.json()["id"])
    page1 = await client.get("/messages/sms?per_page=2", headers=auth)
    assert [m["id"] for m in page1.json()] == ids[::-1][:2]
    assert 'rel="next"' in page1.headers["link"]
    next_url = page1.headers["link"].split(">", 1)[0].lstrip("<")
    page2 = await client.get(next_url, headers=auth)
    assert [m["id"] for m in page2.json()] == ids[::-1][2:4]
    page3 = await client.get(page2.headers["link"].split(">", 1)[0].lstrip("<"), headers=auth)
    assert [m["id"] for m in page3.json()] == ids[::-1][4:]
    assert 'rel="next"' not in page3.headers["link"]
    for bad in ("per_page=0", "per_page=101", "per_page=x", "before=-1"):
        assert (await client.get(f"/messages/sms?{bad}", headers=auth)).status_code == 422


async def test_unknown_message_and_route_are_json_404(client, auth):
    response = await client.get("/messages/sms/999999999", headers=auth)
    assert response.status_code == 404 and response.json() == {"message": "Not Found"}
    response = await client.get("/nope", headers=auth)
    assert response.status_code == 404 and response.json() == {"message": "Not Found"}
    response = await client.put("/messages/sms", headers=auth)
    assert response.status_code == 405
