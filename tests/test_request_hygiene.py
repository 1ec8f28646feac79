"""Hostile or sloppy requests answered cleanly: a non-JSON Content-Type (415),
duplicate keys (400), integers too long to convert (422), text with nothing
visible (422), trailing line breaks removed before the text is stored, and
the security headers of the HTML pages."""

from __future__ import annotations

import json

import pytest

GOOD = {"from": "+46736265400", "to": "+46736265449", "message": "Hi"}
RAW = json.dumps(GOOD).encode()
VOICE = json.dumps({**GOOD, "message": None, "file": "x.wav"}).encode()


@pytest.mark.parametrize("content_type", [
    "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    "application/json; charset=utf-16", "application/json; charset=latin-1",
    "application/jsonx", "text/json", "application/json; boundary=x", "",
])
async def test_a_body_not_declared_json_in_utf8_is_415(client, auth, content_type):
    for path, body in (("/messages/sms", RAW), ("/messages/voice", VOICE),
                       ("/webhooks", b'{"url": "http://127.0.0.1:9/"}')):
        response = await client.post(path, content=body,
                                     headers={**auth, "Content-Type": content_type})
        assert response.status_code == 415, (path, content_type, response.text)
        assert response.json() == {
            "message": "Unsupported Content-Type: send application/json in UTF-8"}
    assert (await client.get("/messages/sms", headers=auth)).json() == []


@pytest.mark.parametrize("content_type", [
    "application/json", "application/json; charset=utf-8", "Application/JSON; Charset=UTF-8",
    'application/json; charset="utf-8"', "application/vnd.amivono+json", None,
])
async def test_json_in_utf8_is_taken(client, auth, content_type):
    headers = {**auth} if content_type is None else {**auth, "Content-Type": content_type}
    response = await client.post("/messages/sms", content=RAW, headers=headers)
    assert response.status_code == 201, (content_type, response.text)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
async def test_a_utf16_or_utf32_body_is_400_even_when_declared_json(client, auth, encoding):
    body = json.dumps(GOOD).encode(encoding)
    response = await client.post("/messages/sms", content=body,
                                 headers={**auth, "Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert (await client.get("/messages/sms", headers=auth)).json() == []


@pytest.mark.parametrize("raw", [
    b'{"from": "+46736265400", "to": "+46736265449", "to": "+46700000001", "message": "Hi"}',
    b'{"from": "+46736265400", "to": "+46736265449", "message": "Hi", "message": "Hi"}',
    b'{"from": "+46736265400", "to": "+46736265449", "message": "Hi", "repeat": 2,'
    b' "repeat": 3}',
])
async def test_duplicate_keys_are_400(client, auth, raw):
    response = await client.post("/messages/sms", content=raw,
                                 headers={**auth, "Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith("Problems parsing JSON: duplicate key")
    assert (await client.get("/messages/sms", headers=auth)).json() == []


async def test_duplicate_keys_in_a_webhook_patch_are_400(client, auth):
    raw = b'{"url": "http://127.0.0.1:9/a", "url": "http://127.0.0.1:9/b"}'
    response = await client.post("/webhooks", content=raw,
                                 headers={**auth, "Content-Type": "application/json"})
    assert response.status_code == 400, response.text


@pytest.mark.parametrize(("field", "digits"), [("repeat", 4301), ("repeat", 5000),
                                                ("repeat_interval", 101), ("repeat", 30)])
async def test_integers_of_any_length_in_a_body_are_422_out_of_range(client, auth, field,
                                                                      digits):
    for sign in ("", "-"):
        raw = (b'{"from": "+46736265400", "to": "+46736265449", "message": "Hi", "repeat": 2, "'
               + field.encode() + b'": ' + sign.encode() + b"9" * digits + b"}")
        raw = raw.replace(b'"repeat": 2, "repeat":', b'"repeat":')
        response = await client.post("/messages/sms", content=raw,
                                     headers={**auth, "Content-Type": "application/json"})
        assert response.status_code == 422, (digits, response.text[:300])
        [error] = response.json()["errors"]
        assert (error["field"], error["code"]) == (field, "out_of_range"), error


async def test_voice_integers_too_long_to_convert_are_422(client, auth):
    raw = (b'{"from": "+46736265400", "to": "+46736265449", "file": "x.wav", "retries": '
           + b"1" * 4400 + b"}")
    response = await client.post("/messages/voice", content=raw,
                                 headers={**auth, "Content-Type": "application/json"})
    assert response.status_code == 422, response.text[:300]
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
        ("retries", "out_of_range")]


@pytest.mark.parametrize("text", ["\u200b\u200b\u200b", "\u2060\ufeff\u200d", " \u3164 ",
                                  "\u200b\n", "\u202e"])
async def test_an_sms_with_no_visible_character_is_422(client, auth, text):
    response = await client.post("/messages/sms", json={**GOOD, "message": text}, headers=auth)
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert (error["field"], error["code"]) == ("message", "invalid")
    assert "no visible character" in error["message"]


async def test_trailing_line_breaks_are_not_stored(client, auth):
    response = await client.post("/messages/sms", json={**GOOD, "message": "Hi\nthere\r\n\n"},
                                 headers=auth)
    assert response.status_code == 201, response.text
    assert response.json()["message"] == "Hi\nthere"
    again = await client.get(response.headers["Location"], headers=auth)
    assert again.json()["message"] == "Hi\nthere"


async def test_html_pages_carry_security_headers(client, auth):
    for path in ("/docs", "/l/AAAAAAAAAAA", "/l/short"):
        response = await client.get(path)
        assert response.headers["content-type"].startswith("text/html"), path
        csp = response.headers["content-security-policy"]
        for part in ("default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'"):
            assert part in csp, (path, csp)
        assert "script-src" not in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    for path, headers in (("/healthz", {}), ("/messages/sms", auth), ("/nope", {}),
                          ("/openapi.json", {})):
        response = await client.get(path, headers=headers)
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert "content-security-policy" not in response.headers, path


async def test_the_click_page_sends_the_headers_on_a_real_link(client, auth):
    created = await client.post("/messages/sms", json={**GOOD, "repeat": 2}, headers=auth)
    link = created.json()["message"].rsplit(" ", 1)[1]
    response = await client.get(link)
    assert response.status_code == 200, response.text
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
