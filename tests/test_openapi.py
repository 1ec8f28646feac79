"""OpenAPI: the document covers every route, /docs shows it, and schemathesis's
default checks pass against the live API with it."""

from __future__ import annotations

import os
import re
import time
from typing import Any

import asyncpg
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure
from schemathesis.specs.openapi.checks import positive_data_acceptance
from starlette.routing import Route

from service.http.app import create_app
from service.settings import Settings
from service.store.api_keys import create_key, hash_key

from .audio import tone

# PUT /files takes audio/* too: send such bodies as the bytes they are.
schemathesis.serializer.alias(["audio/wav", "audio/mpeg", "audio/ogg", "audio/flac"],
                              "application/octet-stream")

VOICE_FILE = "greeting.wav"  # the file the document's VoiceRequest example names
GOOD_SMS = {"from": "+46736265400", "to": "+46736265449", "message": "Hello"}


async def account_key(pool: asyncpg.Pool, rate_limit: int | None = 1_000_000) -> str:
    """A fresh account with its own rate-limit window (the default 5000 an hour is
    too few for a schemathesis run) and its key."""
    name = f"openapi-{os.getpid()}-{time.time_ns()}"
    key = await create_key(pool, name)
    await pool.execute("UPDATE accounts SET rate_limit_per_hour = $2 WHERE name = $1",
                       name, rate_limit)
    return key


@pytest.fixture(scope="module")
async def st_key(api: str, pool: asyncpg.Pool) -> str:
    """The key schemathesis authenticates with (its account's rate limit raised)."""
    key = await account_key(pool)
    async with httpx.AsyncClient(base_url=api, timeout=20) as client:
        # So that the document's voice example can succeed.
        uploaded = await client.put(f"/files/{VOICE_FILE}", content=tone(440, 0.5),
                                    headers={"Authorization": f"Bearer {key}"})
        assert uploaded.status_code == 201, uploaded.text
    return key


@pytest.fixture(scope="module")
def api_schema(api: str, st_key: str) -> schemathesis.BaseSchema:
    """The document as the live API serves it. The key is given as the bearerAuth
    scheme's credentials, so schemathesis still leaves it out where a case tests a
    missing or invalid Authorization."""
    config = schemathesis.Config.from_dict(
        {"auth": {"openapi": {"bearerAuth": {"bearer": st_key}}}})
    return schemathesis.openapi.from_url(f"{api}/openapi.json", config=config)


# --- the document and the code cannot drift --------------------------------

def route_operations(settings: Settings) -> set[tuple[str, str]]:
    """(METHOD, OpenAPI path) of every route the app registers."""
    return {(method, re.sub(r":\w+}", "}", route.path))
            for route in create_app(settings).routes if isinstance(route, Route)
            for method in route.methods or ()}


async def test_every_route_is_in_the_document_and_nothing_else(client, settings):
    spec = (await client.get("/openapi.json")).json()
    assert spec["openapi"] == "3.1.0"
    documented = {(method.upper(), path)
                  for path, item in spec["paths"].items()
                  for method in item
                  if method in ("get", "head", "post", "put", "patch", "delete")}
    routes = route_operations(settings)
    assert all(isinstance(r, Route) for r in create_app(settings).routes)
    # Starlette answers HEAD on every GET route by itself; only the tracked link's
    # HEAD means something of its own (it is never a click), and it is documented.
    assert {op for op in routes if op[0] != "HEAD"} == {
        op for op in documented if op[0] != "HEAD"}
    assert {op for op in documented if op[0] == "HEAD"} <= routes


async def test_the_document_is_valid_openapi(api_schema):
    api_schema.validate()


async def test_docs_page_shows_every_path(client):
    spec = (await client.get("/openapi.json")).json()
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    # Self-contained: nothing is loaded from anywhere else.
    assert not re.search(r"<script|<link|<img|<iframe|src=|@import|url\(", page)
    assert set(re.findall(r'href="([^"#][^"]*)"', page)) <= {"openapi.json"}
    for path, item in spec["paths"].items():
        assert f"{path}</" in page, path
        for method, op in item.items():
            assert f'id="op-{op["operationId"]}"' in page
            assert method.upper() in page
            for parameter in op.get("parameters", []):
                assert f"<code>{parameter['name']}</code>" in page
    for name in spec["components"]["schemas"]:
        assert f'id="schema-{name}"' in page


# --- schemathesis ---------------------------------------------------------

# Refusals of valid-looking data for rules the document states in words because JSON
# Schema cannot express them: a number valid for its country (libphonenumber), the SMS
# length in GSM-7 septets or UCS-2 units (and its link cost with `repeat`), a message
# that is only white space (Python's idea of it), has no visible character or holds NUL,
# a destination the guards refuse, a file this account has
# uploaded, and an Idempotency-Key used earlier with another body. Anything else 422 is
# still a failure of positive_data_acceptance.
RULES_BEYOND_THE_SCHEMA: dict[tuple[str, str], tuple[str, ...]] = {
    **{(number, "invalid"): ("is not a valid number for its country", "is not a phone number",
                             "must be written in E.164 form") for number in ("from", "to")},
    ("message", "too_long"): ("septets in GSM-7", "UCS-2 characters in UCS-2"),
    ("message", "invalid"): ("must not be empty", "contains NUL", "has no visible character"),
    # The destination guards: the number's type (libphonenumber) and the account's countries.
    ("to", "destination_not_allowed"): ("is a premium-rate", "is a satellite",
                                        "is a shared-cost", "of unknown type",
                                        "this account may send to"),
    ("file", "invalid"): ("no uploaded file named",),
    **{(field, "invalid"): ("no uploaded file named",)
       for field in ("escalate.file", "acknowledge_prompt.file")},
    **{(field, "invalid"): ("must be a non-empty string", "contains NUL")
       for field in ("text", "escalate.text", "acknowledge_prompt.text")},
    # escalate.after is at most the request's own `repeat`.
    ("escalate.after", "out_of_range"): ("the sends asked with repeat",),
    ("Idempotency-Key", "invalid"): ("already used with a different request body",),
    # A webhook URL's host must resolve, to a public address (or an allowed network).
    ("url", "invalid"): ("does not resolve", "is not a public address",
                         "must be http or https", "has no host", "not a valid URL",
                         "must not carry credentials"),
}
# PUT /files: the body's schema is "bytes"; whether they are decodable audio of the
# right length is for libsndfile to say (415 not audio, 422 unusable audio).
AUDIO_TEXTS = ("not a supported audio file", "truncated", "could not be decoded",
               "shorter than", "longer than", "request body is empty", "invalid samples",
               "channels; at most", "Hz allowed", "does not declare its length")


def refused_beyond_the_schema(response: schemathesis.Response) -> bool:
    if response.status_code == 415:
        return "not a supported audio file" in response.json()["message"]
    if response.status_code != 422:
        return False
    body = response.json()
    if "errors" not in body:
        return any(text in body["message"] for text in AUDIO_TEXTS)
    return all(any(text in e["message"]
                   for text in RULES_BEYOND_THE_SCHEMA.get((e["field"], e["code"]), ()))
               for e in body["errors"])


def positive_data_acceptance_beyond_the_schema(ctx, response, case) -> bool | None:
    """positive_data_acceptance, except for the refusals above."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except Failure:
        if refused_beyond_the_schema(response):
            return None
        raise


def not_a_server_error_but_not_ready(ctx, response, case) -> bool | None:
    """not_a_server_error, except /readyz's documented 503 "not ready" (no Asterisk
    runs in this test): a readiness probe says "not ready" with a 503 by design."""
    try:
        return not_a_server_error(ctx, response, case)
    except Failure:
        if response.status_code == 503 and response.json()["status"] == "not ready":
            return None
        raise


SEMANTIC_OPERATIONS = {"POST /messages/sms", "POST /messages/voice", "PUT /files/{name}",
                       "POST /webhooks", "PATCH /webhooks/{endpoint_id}"}


def check_options(label: str) -> dict[str, Any]:
    """Every default check, with the two narrowed ones above where they apply."""
    if label in SEMANTIC_OPERATIONS:
        return {"excluded_checks": [positive_data_acceptance],
                "additional_checks": [positive_data_acceptance_beyond_the_schema]}
    if label == "GET /readyz":
        return {"excluded_checks": [not_a_server_error],
                "additional_checks": [not_a_server_error_but_not_ready]}
    return {}


# Every operation, selected explicitly: schemathesis leaves out the one that served the
# document (GET /openapi.json) unless a filter selects it.
schema = schemathesis.pytest.from_fixture("api_schema").include(path_regex="^/")


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    # schemathesis 4.32's lazy schemas read and write `node._nodeid` (to name each
    # operation in the report), which pytest 9.2 no longer has.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


@schema.parametrize()
@hypothesis_settings(max_examples=25, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_document(case: schemathesis.Case, api: str) -> None:
    case.call_and_validate(base_url=api, timeout=20, **check_options(case.operation.label))


# --- what random data rarely reaches: every documented answer, checked ------

class Api:
    """Calls through the document: each response goes through schemathesis's checks
    (status code, content type, headers, body schema, auth enforcement)."""

    def __init__(self, schema: schemathesis.BaseSchema, base_url: str, key: str) -> None:
        self.schema, self.base_url = schema, base_url
        self.auth = {"Authorization": f"Bearer {key}"}

    def __call__(self, method: str, path: str, status: int, *, auth: bool = True,
                 headers: dict[str, str] | None = None, **case: Any) -> schemathesis.Response:
        operation = self.schema[path][method]
        sent = {**(self.auth if auth else {}), **(headers or {})}
        response = operation.Case(**case).call_and_validate(
            base_url=self.base_url, headers=sent, timeout=20,
            **check_options(operation.label))
        assert response.status_code == status, response.text
        return response

    def check(self, method: str, path: str, response: httpx.Response) -> None:
        """Validate a response to a request schemathesis cannot make (invalid JSON)."""
        self.schema[path][method].Case().validate_response(response)


@pytest.fixture
async def through(api_schema, api: str, pool: asyncpg.Pool) -> Api:
    return Api(api_schema, api, await account_key(pool))


async def test_files_answers_match_the_document(through: Api):
    one = {"path_parameters": {"name": "doc.wav"}}
    through("PUT", "/files/{name}", 201, body=tone(440, 0.5),
            media_type="application/octet-stream", **one)
    replaced = through("PUT", "/files/{name}", 200, body=tone(440, 1.0, "FLAC"),
                       media_type="audio/flac", **one)
    assert replaced.headers["location"][0].endswith("/files/doc.wav")
    assert through("GET", "/files/{name}", 200, **one).json()["source_format"] == "FLAC"
    assert [f["name"] for f in through("GET", "/files", 200).json()] == ["doc.wav"]
    through("PUT", "/files/{name}", 415, body=b"not audio at all, just text",
            media_type="application/octet-stream", **one)
    through("PUT", "/files/{name}", 422, body=tone(440, 0.05),
            media_type="application/octet-stream", **one)
    through("GET", "/files/{name}", 422, path_parameters={"name": "bad name"})
    voice = through("POST", "/messages/voice", 201,
                    body={"from": "+46736265400", "to": "+46736265449", "file": "doc.wav"})
    through("DELETE", "/files/{name}", 409, **one)  # a queued message needs it
    through("DELETE", "/messages/voice/{message_id}", 200,
            path_parameters={"message_id": voice.json()["id"]})
    through("DELETE", "/files/{name}", 204, **one)
    through("GET", "/files/{name}", 404, **one)
    through("DELETE", "/files/{name}", 404, **one)


async def test_sms_answers_match_the_document(through: Api):
    body = {**GOOD_SMS, "repeat": 3, "repeat_interval": 5}
    key = {"Idempotency-Key": "doc-1"}
    first = through("POST", "/messages/sms", 201, body=body, headers=key)
    again = through("POST", "/messages/sms", 201, body=body, headers=key)
    assert again.headers["idempotent-replayed"] == ["true"] and again.json() == first.json()
    through("POST", "/messages/sms", 422, body={**body, "repeat": 4}, headers=key)
    message = first.json()
    one = {"path_parameters": {"message_id": message["id"]}}
    assert through("GET", "/messages/sms/{message_id}", 200, **one).json()["attempts"] == []
    through("POST", "/messages/sms", 201, body=GOOD_SMS)
    page = through("GET", "/messages/sms", 200, query={"per_page": 1})
    assert 'rel="next"' in page.headers["link"][0] and len(page.json()) == 1
    through("GET", "/messages/sms", 422, query={"per_page": 0})
    token = message["message"].rsplit("/", 1)[1]
    link = {"path_parameters": {"token": token}}
    through("HEAD", "/l/{token}", 200, auth=False, **link)
    through("GET", "/l/{token}", 200, auth=False, headers={"User-Agent": "Mozilla/5.0"},
            **link)
    through("GET", "/l/{token}", 404, auth=False, path_parameters={"token": "A" * 11})
    through("DELETE", "/messages/sms/{message_id}", 409, **one)  # clicked: nothing to cancel
    other = through("POST", "/messages/sms", 201, body=GOOD_SMS).json()
    two = {"path_parameters": {"message_id": other["id"]}}
    canceled = through("DELETE", "/messages/sms/{message_id}", 200, **two).json()
    assert canceled["status"] == "canceled"
    through("DELETE", "/messages/sms/{message_id}", 200, **two)  # canceled again: the same
    # The largest bigint is a well-formed id that no row has; one past it is still
    # 19 digits (so the route matches) but beyond what PostgreSQL can take.
    for beyond in (2**63 - 1, 2**63):
        missing = through("GET", "/messages/sms/{message_id}", 404,
                          path_parameters={"message_id": beyond})
        assert missing.json() == {"message": "Not Found"}, beyond


async def test_voice_answers_match_the_document(through: Api):
    through("PUT", "/files/{name}", 201, body=tone(440, 0.5),
            media_type="application/octet-stream", path_parameters={"name": "v.wav"})
    body = {"from": "+46736265400", "to": "+46736265449", "file": "v.wav", "retries": 2,
            "retry_interval": 1}
    created = through("POST", "/messages/voice", 201, body=body).json()
    one = {"path_parameters": {"message_id": created["id"]}}
    assert through("GET", "/messages/voice/{message_id}", 200, **one).json()["retries"] == 2
    assert through("GET", "/messages/voice", 200).json()[0]["id"] == created["id"]
    through("POST", "/messages/voice", 422, body={**body, "file": "missing.wav"})
    through("DELETE", "/messages/voice/{message_id}", 200, **one)
    through("GET", "/messages/voice/{message_id}", 404, path_parameters={"message_id": 1 << 62})
    beyond = through("GET", "/messages/voice/{message_id}", 404,
                     path_parameters={"message_id": 2**63})  # past a bigint
    assert beyond.json() == {"message": "Not Found"}


async def test_errors_match_the_document(through: Api, pool: asyncpg.Pool, api: str):
    through("GET", "/files", 401, auth=False)
    through("GET", "/files", 401, auth=False, headers={"Authorization": "Bearer amv_nope"})
    through("POST", "/messages/sms", 413, body={**GOOD_SMS, "message": "x" * 70_000})
    async with httpx.AsyncClient(base_url=api, timeout=20) as client:
        # Lone surrogates: lower and upper case escapes, and one after a valid pair.
        for raw in (b"{", b'{"message": "\\ud800"}', b'{"message": "x\\uDC00"}',
                    b'{"message": "\\ud83d\\ude00\\ud83d"}',
                    b"[" * 20_000 + b"]" * 20_000):
            response = await client.post("/messages/sms", content=raw, headers=through.auth)
            assert response.status_code == 400, response.text
            through.check("POST", "/messages/sms", response)
            response = await client.post("/messages/voice", content=raw, headers=through.auth)
            assert response.status_code == 400, response.text
            through.check("POST", "/messages/voice", response)
        # A method a path does not have: 405 naming every method the path has.
        response = await client.request("PATCH", "/messages/sms", headers=through.auth)
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, HEAD, POST"
    key = through.auth["Authorization"].removeprefix("Bearer ")
    await pool.execute(
        "UPDATE accounts SET rate_limit_per_hour = 0 WHERE id = "
        "(SELECT account_id FROM api_keys WHERE key_hash = $1)", hash_key(key))
    limited = through("GET", "/files", 429)
    assert int(limited.headers["retry-after"][0]) >= 1


async def test_operations_endpoints_match_the_document(through: Api, sandbox):
    # With the gateway Asterisk up, /readyz is 200 (its 503 is in test_observability).
    assert through("GET", "/healthz", 200, auth=False).json() == {"status": "ok"}
    ready = through("GET", "/readyz", 200, auth=False).json()
    assert ready == {"status": "ready", "checks": {"postgres": "ok", "asterisk": "ok"}}
    assert "# TYPE" in through("GET", "/metrics", 200, auth=False).text
    through("GET", "/openapi.json", 200, auth=False)
    through("GET", "/docs", 200, auth=False)
