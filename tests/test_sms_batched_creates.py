"""SMS created together: concurrent POSTs without an Idempotency-Key are
stored in shared transactions (sms_messages.create_batched), each answered
with its own row and refused on its own, as if it had come alone. On an API
of its own with the `owned` sender policy and a destination cap of 3."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from service.domain.refusals import Reason, Refused
from service.domain.sms_requests import SmsRequest
from service.settings import Settings
from service.store import account_numbers, sms_messages
from service.store.api_keys import create_key
from service.store.idempotency_keys import Reservation
from service.store.queries import queries

from .audio import tone
from .conftest import LAUNCH
from .test_audio_uploads import free_port

CAP = 3


def number() -> str:
    return f"+4673{secrets.randbelow(10**7):07d}"


@pytest.fixture(scope="module")
async def batched_api(db: str) -> AsyncIterator[str]:
    port = free_port()
    proc = await LAUNCH.api("api-batched", port, env={
        "AMIVONO_SENDER_POLICY": "owned", "AMIVONO_DESTINATION_CAP_PER_HOUR": str(CAP)})
    yield f"http://127.0.0.1:{port}"
    await asyncio.to_thread(proc.stop)


@pytest.fixture
async def http(batched_api: str) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=batched_api, timeout=30, limits=limits) as c:
        yield c


async def account(pool: asyncpg.Pool) -> tuple[int, str, dict[str, str]]:
    """A new account owning one number: (id, its number, auth header)."""
    name = f"batched-{os.getpid()}-{time.time_ns()}"
    key = await create_key(pool, name)
    account_id = await queries.accounts.id_by_name(pool, name=name)
    sender = number()
    await account_numbers.add(pool, account_id, sender)
    return account_id, sender, {"Authorization": f"Bearer {key}"}


async def transactions(pool: asyncpg.Pool, ids: list[int]) -> int:
    """How many transactions created these rows (each row's xmin)."""
    count: int = await pool.fetchval(
        "SELECT count(DISTINCT xmin::text) FROM sms_messages WHERE id = ANY($1::bigint[])",
        ids)
    return count


async def test_concurrent_creates_share_commits_and_each_gets_its_own_row(http, pool):
    account_id, sender, auth = await account(pool)
    n = 60
    bodies = [{"from": sender, "to": number(), "message": f"batch {i} says hi",
               **({"repeat": 3} if i % 2 else {})} for i in range(n)]
    answers = await asyncio.gather(*(http.post("/messages/sms", json=b, headers=auth)
                                     for b in bodies))
    assert [a.status_code for a in answers] == [201] * n, [a.text for a in answers]
    for body, answer in zip(bodies, answers, strict=True):
        got = answer.json()
        # Its own row, not a neighbour's in the batch.
        assert (got["to"], got["message"].split(" http")[0]) == (body["to"], body["message"])
        assert answer.headers["Location"] == got["url"]
        stored = await pool.fetchrow(
            "SELECT account_id, to_number, text, repeat_total, link_token IS NOT NULL AS link"
            " FROM sms_messages WHERE id = $1", got["id"])
        assert (stored["account_id"], stored["to_number"], stored["text"]) == (
            account_id, body["to"], body["message"])
        assert (stored["repeat_total"], stored["link"]) == (
            (3, True) if "repeat" in body else (1, False))
    made = await transactions(pool, [a.json()["id"] for a in answers])
    # Sixty requests at once: a handful of commits, not sixty.
    assert made <= n // 3, f"{n} SMS made in {made} transactions"


async def test_a_batch_refuses_each_request_on_its_own(http, pool):
    account_id, sender, auth = await account(pool)
    capped, opted_out = number(), number()
    await pool.execute("INSERT INTO opt_outs (account_id, phone) VALUES ($1, $2)",
                       account_id, opted_out)
    wanted: list[tuple[str, dict[str, Any]]] = (
        [("capped", {"from": sender, "to": capped})] * (CAP + 3)
        + [("not_owned", {"from": number(), "to": number()})] * 2
        + [("opted_out", {"from": sender, "to": opted_out})] * 2
        + [("foreign", {"from": sender, "to": "+252612345678"})] * 2
        + [("fine", {"from": sender, "to": number()}) for _ in range(6)])
    order = list(range(len(wanted)))
    secrets.SystemRandom().shuffle(order)  # the kinds mixed within batches
    answers = dict(zip(order, await asyncio.gather(*(
        http.post("/messages/sms", json={**wanted[i][1], "message": "hi"}, headers=auth)
        for i in order)), strict=True))

    def said(kind: str) -> list[tuple[int, tuple[str, str] | None]]:
        out = []
        for i, (k, _) in enumerate(wanted):
            if k == kind:
                r = answers[i]
                errors = r.json().get("errors") if r.status_code != 201 else None
                out.append((r.status_code, (errors[0]["field"], errors[0]["code"])
                            if errors else None))
        return sorted(out, key=lambda x: x[0])

    assert said("capped") == [(201, None)] * CAP + [(429, ("to", "destination_cap"))] * 3
    assert said("not_owned") == [(422, ("from", "not_owned"))] * 2
    assert said("opted_out") == [(422, ("to", "opted_out"))] * 2
    assert said("foreign") == [(422, ("to", "destination_not_allowed"))] * 2
    assert said("fine") == [(201, None)] * 6
    rows = await pool.fetch("SELECT to_number FROM sms_messages WHERE account_id = $1",
                            account_id)
    assert sorted(r["to_number"] for r in rows) == sorted(
        [capped] * CAP + [b["to"] for k, b in wanted if k == "fine"])


async def test_a_row_the_database_refuses_fails_alone(pool, db):
    """One bad row fails the shared statement: the batch is then stored one
    by one, so only that request fails (here the table's own CHECK on
    `to_number`, which validation never lets through)."""
    account_id, sender, _ = await account(pool)
    settings = dataclasses.replace(Settings.from_env(), sender_policy="owned",
                                   allowed_countries="")

    def req(to: str) -> SmsRequest:
        return SmsRequest(sender, to, "hello", 1, None, False)

    good = [number() for _ in range(5)]
    results = await asyncio.gather(
        *(sms_messages.create_batched(pool, account_id, req(to), settings)
          for to in [*good[:3], "+0123", *good[3:]]), return_exceptions=True)
    assert isinstance(results[3], asyncpg.CheckViolationError), results[3]
    made = [r for i, r in enumerate(results) if i != 3]
    assert [r["to"] for r in made] == good, made
    assert await pool.fetchval(
        "SELECT count(*) FROM sms_messages WHERE account_id = $1", account_id) == 5


async def test_keyed_creates_share_commits_and_replay_their_own_answer(http, pool):
    _, sender, auth = await account(pool)
    n = 30
    bodies = [{"from": sender, "to": number(), "message": f"keyed {i}"} for i in range(n)]
    keyed = [{**auth, "Idempotency-Key": f"k-{i}-{time.time_ns()}"} for i in range(n)]
    first = await asyncio.gather(*(http.post("/messages/sms", json=b, headers=h)
                                   for b, h in zip(bodies, keyed, strict=True)))
    assert [a.status_code for a in first] == [201] * n, [a.text for a in first]
    assert await transactions(pool, [a.json()["id"] for a in first]) <= n // 3
    again = await asyncio.gather(*(http.post("/messages/sms", json=b, headers=h)
                                   for b, h in zip(bodies, keyed, strict=True)))
    for a, b in zip(first, again, strict=True):
        assert b.status_code == 201 and b.headers["Idempotent-Replayed"] == "true", b.text
        assert b.json() == a.json() and b.headers["Location"] == a.headers["Location"]


async def test_a_key_taken_over_refuses_its_request_alone(pool, db):
    """A batch whose key was taken over by a later request must not make that
    request's message: the batch is stored one by one, that one refused 409."""
    account_id, sender, _ = await account(pool)
    settings = dataclasses.replace(Settings.from_env(), sender_policy="owned")
    reservations = []
    for i in range(4):
        at = await pool.fetchval(
            "INSERT INTO idempotency_keys (account_id, key, request_hash)"
            " VALUES ($1, $2, '\\x00') RETURNING created_at", account_id, f"t-{i}")
        reservations.append(Reservation(account_id, f"t-{i}", at))
    # Key t-2 taken over: its row now holds a later reservation.
    await pool.execute("UPDATE idempotency_keys SET created_at = created_at + interval '1 s'"
                       " WHERE account_id = $1 AND key = 't-2'", account_id)
    good = [number() for _ in range(4)]
    results = await asyncio.gather(*(
        sms_messages.create_batched(pool, account_id, SmsRequest(sender, to, "hi", 1, None,
                                                                 False), settings, r)
        for to, r in zip(good, reservations, strict=True)), return_exceptions=True)
    assert isinstance(results[2], Refused) and results[2].reason is Reason.CONFLICT, results
    assert [r["to"] for i, r in enumerate(results) if i != 2] == good[:2] + good[3:]
    made = await pool.fetch("SELECT to_number FROM sms_messages WHERE account_id = $1",
                            account_id)
    assert sorted(r["to_number"] for r in made) == sorted(good[:2] + good[3:])
    stored = await pool.fetch("SELECT key, response_status FROM idempotency_keys"
                              " WHERE account_id = $1 ORDER BY key", account_id)
    assert [(r["key"], r["response_status"]) for r in stored] == [
        ("t-0", 201), ("t-1", 201), ("t-2", None), ("t-3", 201)]


async def test_a_create_refused_for_its_sender_takes_no_place_under_the_cap(pool, db):
    """Alone, a create from a number not the account's is 422 and counts for
    nothing: in a batch it must not fill the cap that the batch's later,
    valid creates to the same phone are then refused with (429)."""
    account_id, sender, _ = await account(pool)
    settings = dataclasses.replace(Settings.from_env(), sender_policy="owned",
                                   destination_cap_per_hour=2)
    to, stranger = number(), number()
    results = await asyncio.gather(*(
        sms_messages.create_batched(pool, account_id, SmsRequest(s, to, "hi", 1, None, False),
                                    settings)
        for s in [stranger, stranger, sender, sender]), return_exceptions=True)
    for refused in results[:2]:
        assert isinstance(refused, Refused) and refused.reason is Reason.INVALID, refused
        assert [(e.field, e.code) for e in refused.errors] == [("from", "not_owned")]
    assert [r["from"] for r in results[2:] if isinstance(r, dict)] == [sender] * 2, results
    assert await pool.fetchval(
        "SELECT count(*) FROM sms_messages WHERE account_id = $1", account_id) == 2


@pytest.fixture(scope="module")
async def two_processes(db: str) -> AsyncIterator[str]:
    """An API of two processes (AMIVONO_API_WORKERS=2), the same cap."""
    port = free_port()
    proc = await LAUNCH.api("api-batched-2", port, env={
        "AMIVONO_API_WORKERS": "2", "AMIVONO_DESTINATION_CAP_PER_HOUR": str(CAP)})
    yield f"http://127.0.0.1:{port}"
    await asyncio.to_thread(proc.stop)


async def test_two_api_processes_keep_the_cap_over_batches_and_single_creates(
        two_processes, pool):
    """Batches of both processes and the one-transaction path (voice, SMS
    with escalate) to the same phones at once: exactly the cap is accepted
    for each phone, the rest 429, none waits on another in a circle (500)."""
    _, _, auth = await account(pool)
    sender = "+46736265400"  # the default `any` sender policy
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=two_processes, timeout=30, limits=limits) as c:
        put = await c.put("/files/tone.wav", content=tone(440, 0.5), headers=auth)
        assert put.status_code == 201, put.text
        phones = [number() for _ in range(8)]
        sms = {"from": sender, "message": "x"}
        wanted: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        for to in phones:
            wanted += [("/messages/sms", {**sms, "to": to}, {})] * 8
            wanted += [("/messages/sms", {**sms, "to": to}, {"Idempotency-Key": f"{to}-{i}"})
                       for i in range(3)]
            wanted += [("/messages/voice", {"from": sender, "to": to, "file": "tone.wav"},
                        {})] * 2
            wanted += [("/messages/sms", {**sms, "to": to, "repeat": 2, "repeat_interval": 5,
                                          "escalate": {"after": 1, "file": "tone.wav"}}, {})] * 2
        secrets.SystemRandom().shuffle(wanted)
        answers = await asyncio.gather(*(c.post(path, json=body, headers={**auth, **more})
                                         for path, body, more in wanted))
    said: dict[str, Counter[int]] = {to: Counter() for to in phones}
    for (_, body, _), answer in zip(wanted, answers, strict=True):
        assert answer.status_code in (201, 429), answer.text
        said[body["to"]][answer.status_code] += 1
    assert all(said[to][201] == CAP for to in phones), said
    made = await pool.fetch(
        "SELECT to_number, count(*) AS n FROM (SELECT to_number FROM sms_messages UNION ALL"
        " SELECT to_number FROM voice_messages) m WHERE to_number = ANY($1::text[])"
        " GROUP BY to_number", phones)
    assert sorted((r["to_number"], r["n"]) for r in made) == sorted((to, CAP) for to in phones)
