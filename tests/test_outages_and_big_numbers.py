"""The API during a database outage answers 503 with Retry-After (JSON, no
traceback), and integers too long to convert are refused cleanly."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from service.http.app import create_app
from service.settings import Settings


async def test_an_unreachable_database_is_503_with_retry_after():
    # A real asyncpg pool to a port where nothing listens: every use is refused.
    app = create_app(Settings())
    app.state.settings = Settings()
    app.state.pool = await asyncpg.create_pool("postgresql://postgres@127.0.0.1:9/none",
                                               min_size=0, max_size=1)
    try:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            for method, path in (("GET", "/messages/sms"), ("POST", "/messages/sms"),
                                 ("GET", "/webhooks")):
                response = await c.request(method, path, json={}, headers={
                    "Authorization": "Bearer amv_" + "x" * 43})
                assert response.status_code == 503, (path, response.text)
                assert response.headers["Retry-After"] == "5"
                assert response.json() == {"message": "The database is unavailable; retry later"}
    finally:
        await app.state.pool.close()


@pytest.mark.parametrize("path", [
    "/messages/sms/" + "9" * 5000, "/messages/voice/" + "9" * 20, "/webhooks/" + "1" * 4400,
    "/messages/inbound/" + "9" * 4301])
async def test_ids_past_a_bigint_are_404(client, auth, path):
    response = await client.get(path, headers=auth)
    assert response.status_code == 404 and response.json() == {"message": "Not Found"}


@pytest.mark.parametrize("query", ["per_page=" + "9" * 5000, "before=" + "9" * 4301,
                                   "per_page=" + "0" * 30 + "5"])
async def test_page_parameters_past_their_range_are_422(client, auth, query):
    response = await client.get(f"/messages/sms?{query}", headers=auth)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["code"] == "invalid"
