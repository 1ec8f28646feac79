"""Writes the dispatcher makes together (service/store/write_batches.py)
with the real database and Asterisk: outcomes recorded in one statement
follow the rules of one recorded alone, a batch PostgreSQL refuses is
written one by one, delivery reports share a commit and stay exact, and
console lines share ARI requests."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import asyncpg

from sandbox.processes import NotReady
from service.delivery.queue_worker import WorkerContext
from service.delivery.sms_sends import SmsWorker
from service.domain.delivery_receipts import parse_receipt
from service.store import inbound_messages, sms_messages
from service.store.queries import queries
from service.telephony.ari import AriClient

from .conftest import wait_for

SMS = {"from": "+46736265400", "to": "+46736265449", "message": "Batch test"}
RULES = {"max_failures": 2, "minute_seconds": 1.0, "retry_seconds": 1.0}
# Outcomes of four sends: each rule of finish_send once (a repeat due next,
# a last send, a failure retried, one unknown that reaches max_failures).
OUTCOMES = [("sent", "ok", "gw-a"), ("sent", "ok", None), ("failed", "refused", "gw-b"),
            ("unknown", "no answer", "gw-a")]
CHANGES: list[dict[str, Any]] = [{"repeat": 2, "repeat_interval": 5}, {}, {}, {}]


async def claimed(client, auth, pool, label: str) -> list[asyncpg.Record]:
    """Four messages of a fresh account whose transport no test dispatcher
    serves (so none takes them), claimed here, one attempt each; the fourth
    has failed once before."""
    ids = []
    for i, change in enumerate(CHANGES):
        response = await client.post("/messages/sms", headers=auth,
                                     json={**SMS, "message": f"Batch {label} {i}", **change})
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
        if i == 0:
            await pool.execute("UPDATE accounts SET sms_transport = 'dongle-ami' WHERE id = "
                               "(SELECT account_id FROM sms_messages WHERE id = $1)", ids[0])
    await pool.execute("UPDATE sms_messages SET due_at = now() - interval '1 s', failures = "
                       "CASE WHEN id = $2 THEN 1 ELSE 0 END WHERE id = ANY($1::bigint[])",
                       ids, ids[3])
    rows = await queries.sms_messages.claim_due_sends(
        pool, limit=10, dispatcher="batch", transport="none", ready=["dongle-ami"],
        lease_seconds=600.0)
    rows = sorted((r for r in rows if r["id"] in ids), key=lambda r: ids.index(r["id"]))
    assert [r["id"] for r in rows] == ids and all(r["attempt_id"] for r in rows)
    return rows


async def state(pool, rows: list[asyncpg.Record]) -> list[tuple[Any, ...]]:
    """What finish_send decides, per message, in the order of `rows`."""
    out = []
    for r in rows:
        m = await pool.fetchrow(
            "SELECT m.sent_count, m.failures, m.failed_at IS NOT NULL AS failed, "
            "m.lease_attempt_id, round(extract(epoch FROM m.due_at - a.finished_at)) AS due_in, "
            "a.outcome, a.detail, a.gateway, a.finished_at IS NOT NULL AS finished "
            "FROM sms_messages m JOIN sms_attempts a ON a.id = $2 WHERE m.id = $1",
            r["id"], r["attempt_id"])
        out.append(tuple(m.values()))
    return out


async def test_outcomes_written_together_follow_the_rules_of_one(client, new_key, pool):
    alone = await claimed(client, {"Authorization": f"Bearer {await new_key()}"}, pool, "a")
    together = await claimed(client, {"Authorization": f"Bearer {await new_key()}"}, pool, "t")
    for row, (outcome, detail, gateway) in zip(alone, OUTCOMES, strict=True):
        await sms_messages.finish_send(pool, attempt_id=row["attempt_id"], outcome=outcome,
                                       detail=detail, gateway=gateway, **RULES)
    await sms_messages.finish_sends(
        pool, [(row["attempt_id"], *o) for row, o in zip(together, OUTCOMES, strict=True)],
        **RULES)
    expected = await state(pool, alone)
    assert await state(pool, together) == expected
    # The four rules were each exercised: a repeat due in 5 minutes of 1 s,
    # a last send, a retry after 1 s, a failure that ends the message.
    assert [(e[0], e[1], e[2], e[3], e[4]) for e in expected] == [
        (1, 0, False, None, 5), (1, 0, False, None, None), (0, 1, False, None, 1),
        (0, 2, True, None, None)]


async def test_a_batch_postgresql_refuses_is_written_one_by_one(client, auth, pool, settings):
    rows = await claimed(client, auth, pool, "r")
    worker = SmsWorker(WorkerContext(settings, pool, cast(Any, None), "batch"),
                       {"ari-pjsip": cast(Any, None)}, "ari-pjsip")
    # The third outcome breaks sms_attempts' CHECK: alone, it is retried as
    # a write that fails always was (until_back); the others are recorded as
    # if never batched with it.
    outcomes = [(r["attempt_id"], *o) for r, o in zip(rows, OUTCOMES, strict=True)]
    outcomes[2] = (rows[2]["attempt_id"], "bogus", "refused", None)
    writing = asyncio.create_task(worker._write_outcomes(outcomes))

    seen: list[Any] = []

    async def others_recorded() -> bool:
        # In the order of `outcomes`: the claim numbers attempts in its own order.
        found = dict(await pool.fetch("SELECT id, outcome FROM sms_attempts WHERE id = ANY($1)",
                                      [o[0] for o in outcomes]))
        seen[:] = [found.get(o[0]) for o in outcomes]
        return seen == ["sent", "sent", None, "unknown"]

    try:
        try:
            await wait_for(others_recorded, 10, what="the three others recorded")
        except NotReady:
            raise AssertionError(f"outcomes recorded: {seen}") from None
        assert not writing.done()  # the bad one is still retried, alone
    finally:
        writing.cancel()


async def test_reports_written_together_stay_exact(client, auth, pool, settings):
    rows = await claimed(client, auth, pool, "d")
    await sms_messages.finish_sends(
        pool, [(r["attempt_id"], "sent", "ok", None) for r in rows[:2]], **RULES)

    def report(attempt_id: int, stat: str) -> tuple[Any, str]:
        body = f"id:{attempt_id} sub:001 dlvrd:001 submit date:2611271200 " \
               f"done date:2611271200 stat:{stat} err:000"
        return parse_receipt(body), body

    written = await inbound_messages.record_reports(pool, [
        report(rows[0]["attempt_id"], "DELIVRD"),
        report(rows[1]["attempt_id"], "UNDELIV"),
        report(rows[0]["attempt_id"], "DELIVRD"),  # heard twice: kept once
        report(10**15, "DELIVRD"),  # names no attempt
    ], settings)
    assert [w is not None for w in written] == [True, True, False, False]
    counts = await pool.fetch("SELECT delivered_count, sent_count, failures FROM sms_messages "
                              "WHERE id = ANY($1) ORDER BY id", [r["id"] for r in rows[:2]])
    # Delivered once; the undelivered send is uncounted and retried.
    assert [tuple(c.values()) for c in counts] == [(1, 1, 0), (0, 0, 1)]


async def test_console_lines_share_ari_requests_under_load(settings, gateway):
    console = gateway.dir / "log" / "messages.log"
    start = console.stat().st_size
    ari = AriClient(settings.ari_url, settings.ari_user, settings.ari_password,
                    f"batch-{time.time_ns()}")
    marker = f"batch{time.time_ns()}"
    try:
        for i in range(30):  # faster than any request can answer
            ari.console_line("AMIVONO_TEST", f"{marker} line {i}")

        def lines() -> list[str]:
            with console.open() as f:
                f.seek(start)
                return [line for line in f.read().splitlines() if marker in line]

        async def all_shown() -> bool:
            return all(f"{marker} line {i}'" in " ".join(lines()).replace(" | ", "' ")
                       for i in range(30))

        await wait_for(all_shown, 10, what="30 console lines")
        shown = lines()
        # All 30 queued before the first request could start: one request.
        assert len(shown) == 1, shown
        assert f"'{marker} line 0 | " in shown[0] and shown[0].count(" | ") == 29
        # A line that comes when none is in flight goes out at once, alone.
        ari.console_line("AMIVONO_TEST", f"{marker} alone")
        await wait_for(lambda: len(lines()) == 2, 10, what="the lone console line")
        assert lines()[1].endswith(f"'{marker} alone'")
    finally:
        await asyncio.sleep(0)
        await ari.close()


async def test_requests_counted_together_each_get_their_own_count(client, pool, new_key):
    """Many requests of one key at once: the API counts those that come
    while a count is in flight in one update, and each still sees its own
    place in the window; with a limit of 25, exactly 25 of 40 pass."""
    key = await new_key()
    account = ("(SELECT account_id FROM api_keys WHERE key_hash = sha256($1::bytea))")
    await pool.execute(f"UPDATE accounts SET rate_limit_per_hour = 25 WHERE id = {account}",
                       key.encode())
    auth = {"Authorization": f"Bearer {key}"}
    responses = await asyncio.gather(*(client.get("/messages/sms", headers=auth)
                                       for _ in range(40)))
    used = sorted(int(r.headers["x-ratelimit-used"]) for r in responses)
    assert used == list(range(1, 41))  # none counted twice, none lost
    assert sorted(r.status_code for r in responses) == [200] * 25 + [429] * 15
    assert all((r.status_code == 200) == (int(r.headers["x-ratelimit-used"]) <= 25)
               for r in responses)
    assert await pool.fetchval(f"SELECT used FROM rate_limit_windows WHERE account_id = "
                               f"{account}", key.encode()) == 40
