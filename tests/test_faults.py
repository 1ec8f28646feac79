"""Faults a running gateway must outlive: PostgreSQL restarted under the
dispatcher and the API (a cluster of the test's own, never the machine's
shared one), and Asterisk refusing to place a call."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from sandbox.carrier_logs import received_calls, received_sms
from sandbox.pg_cluster import Cluster
from service.delivery.voice_calls import channel_id_for
from service.store.api_keys import create_key

from .audio import tone
from .conftest import _P, LAUNCH, TEST_ENV, start_dispatcher, wait_for
from .netfaults import RequestFilterProxy
from .test_voice import phone, upload

PG_PORT = 25450 + _P
API_PORT = 28075 + _P
API = f"http://127.0.0.1:{API_PORT}"
ARI_PORT = int(TEST_ENV["AMIVONO_HTTP_PORT"])


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = Cluster(PG_PORT).init()
    try:
        c.start()
        yield c
    finally:
        c.remove()


@pytest.fixture(scope="module")
async def own_db(cluster: Cluster) -> str:
    from sandbox.databases import fresh_database

    url = await fresh_database(cluster.url("amivono_faults"))
    # Ids far from the shared test database's: the carrier's logs (shared by
    # the session) know messages by id, and other tests count them so.
    conn = await asyncpg.connect(url)
    try:
        for name in await conn.fetch("SELECT sequencename FROM pg_sequences"):
            await conn.execute(f'ALTER SEQUENCE "{name[0]}" RESTART WITH 1000000000')
    finally:
        await conn.close()
    return url


@pytest.fixture(scope="module")
async def own_api(own_db: str) -> AsyncIterator[tuple[str, object]]:
    proc = await LAUNCH.api("api-own-db", API_PORT, {"AMIVONO_DATABASE_URL": own_db})
    yield API, proc
    proc.stop()


async def restart(cluster: Cluster, down: float) -> None:
    await asyncio.to_thread(cluster.stop, "fast")
    await asyncio.sleep(down)
    await asyncio.to_thread(cluster.start)


async def key_for(db: str) -> str:
    pool = await asyncpg.create_pool(db, min_size=1, max_size=1)
    try:
        return await create_key(pool, f"faults-{os.getpid()}-{time.time_ns()}")
    finally:
        await pool.close()


async def test_the_api_answers_503_json_during_a_database_outage_and_recovers(
        cluster, own_db, own_api):
    base, proc = own_api
    auth = {"Authorization": f"Bearer {await key_for(own_db)}"}
    sms = {"from": "+46736265400", "to": "+46736265449", "message": "outage"}
    requests = [("GET", "/messages/sms", auth, None), ("POST", "/messages/sms", auth, sms),
                ("GET", "/messages/voice/1", auth, None), ("GET", "/files", auth, None),
                ("GET", "/webhooks", auth, None),
                # Authentication reads the database first: a wrong key is 503 too.
                ("GET", "/messages/sms", {"Authorization": "Bearer amv_" + "x" * 43}, None)]
    async with httpx.AsyncClient(base_url=base, timeout=20) as c:
        assert (await c.get("/messages/sms", headers=auth)).status_code == 200
        await asyncio.to_thread(cluster.stop, "fast")
        try:
            for _ in range(3):  # first the pooled connections die, then connecting fails
                for method, path, headers, body in requests:
                    r = await c.request(method, path, headers=headers, json=body)
                    assert r.status_code == 503, (method, path, r.status_code, r.text)
                    assert r.headers["content-type"] == "application/json"
                    assert r.json() == {"message": "The database is unavailable; retry later"}
                    assert int(r.headers["Retry-After"]) > 0
                await asyncio.sleep(0.5)
        finally:
            await asyncio.to_thread(cluster.start)

        async def back() -> bool:
            return (await c.get("/messages/sms", headers=auth)).status_code == 200

        await wait_for(back, 30, what="the API to answer 200 again")
        r = await c.post("/messages/sms", headers=auth, json=sms)
        assert r.status_code == 201, r.text
    log = proc.log()
    assert "Traceback" not in log, log[-3000:]
    assert log.count("database unavailable") == 1, log[-3000:]
    assert log.count("database back") == 1, log[-3000:]


async def test_the_dispatcher_survives_postgresql_restarts_and_delivers_everything(
        cluster, own_db, own_api, carrier):
    base, _ = own_api
    auth = {"Authorization": f"Bearer {await key_for(own_db)}"}
    name = f"pg-restart-{time.time_ns()}"
    tag = f"pgr{time.time_ns() % 10**8}"
    # Not the session's inbox file: its lines belong to the shared database.
    d = start_dispatcher(name, AMIVONO_DATABASE_URL=own_db,
                         AMIVONO_SMS_INBOX=str(cluster.root / "sms-inbox.log"))
    pool = await asyncpg.create_pool(own_db, min_size=1, max_size=2)
    bodies = [f"{tag}-{i}" for i in range(40)]
    try:
        d.wait_for_line("sms: connected", 60)
        async with httpx.AsyncClient(base_url=base, timeout=20) as c:
            for body in bodies[:20]:
                r = await c.post("/messages/sms", headers=auth, json={
                    "from": "+46736265400", "to": "+46736265449", "message": body})
                assert r.status_code == 201, r.text
            await restart(cluster, 2.0)  # while those are being sent
            for body in bodies[20:]:
                for _ in range(50):  # the API may still be reconnecting: 503, retry
                    r = await c.post("/messages/sms", headers=auth, json={
                        "from": "+46736265400", "to": "+46736265449", "message": body})
                    if r.status_code != 503:
                        break
                    await asyncio.sleep(0.2)
                assert r.status_code == 201, r.text
            # While these are queued and being sent, and longer than the old
            # retries of an outcome write (7.5 s): written when it is back.
            await restart(cluster, 9.0)

        def delivered() -> bool:
            got = {m["body"] for m in received_sms(carrier)}
            return all(b in got for b in bodies)

        await wait_for(delivered, 90, interval=0.5, what="every SMS at the carrier")
        await wait_for(lambda: pool.fetchval(
            "SELECT count(*) = 0 FROM sms_attempts WHERE finished_at IS NULL"), 30,
            what="every attempt closed")
        assert d.alive(), d.log()[-3000:]
        log = d.log()
        assert "Traceback" not in log, log[-3000:]
        # One line per outage and worker when it starts, not one per failure.
        assert log.count("sms: database unavailable") <= 2, log[-3000:]
    finally:
        await pool.close()
        d.stop()


class RefusesOriginate(RequestFilterProxy):
    """`POST /channels` is answered 503 (or `status`) while `refusing`, as an
    Asterisk that cannot make the channel answers it."""

    def __init__(self, target_port: int, status: bytes = b"503 Service Unavailable",
                 message: bytes = b"Service Unavailable") -> None:
        super().__init__(target_port)
        self.refusing = True
        self.refused = 0
        self.status, self.message = status, message

    async def intercept(self, request_line: bytes, client: asyncio.StreamWriter) -> bool:
        if not (self.refusing and request_line.startswith(b"POST ")
                and b"/channels?" in request_line):
            return False
        self.refused += 1
        body = b'{"message":"%s"}' % self.message
        client.write(b"HTTP/1.1 %s\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (self.status, len(body), body))
        await client.drain()
        return True


async def test_a_call_asterisk_never_placed_waits_and_is_dialled_once_it_can_be(
        client, auth, pool, carrier, gateway):
    await upload(client, auth, "outage.wav", tone(440, 1.0))
    proxy = RefusesOriginate(ARI_PORT)
    port = await proxy.start()
    to = phone()
    d = start_dispatcher(f"ari-refuses-{time.time_ns()}",
                         AMIVONO_ARI_URL=f"http://127.0.0.1:{port}/ari")
    try:
        # Waited for without blocking the loop: the proxy runs in it.
        await wait_for(lambda: "voice: connected" in d.log(), 60, what="voice connected")
        r = await client.post("/messages/voice", headers=auth, json={
            "from": "+46736265400", "to": to, "file": "outage.wav", "retries": 0})
        assert r.status_code == 201, r.text
        message_id = r.json()["id"]
        await wait_for(lambda: proxy.refused >= 2, 30, what="originates refused twice")
        r = await client.get(f"/messages/voice/{message_id}", headers=auth)
        assert r.json()["status"] == "queued" and r.json()["attempts_made"] == 0, r.text
        proxy.refusing = False

        async def final() -> dict:
            m = (await client.get(f"/messages/voice/{message_id}", headers=auth)).json()
            return m if m["outcome"] is not None else {}

        m = await wait_for(final, 60, what="the call to end")
        assert (m["outcome"], m["attempts_made"]) == ("completed", 1), m
        dialled = [a for a in m["attempts"] if not (a["detail"] or "").startswith("not placed")]
        assert [a["outcome"] for a in dialled] == ["completed"], m["attempts"]
        assert all(a["outcome"] == "failed" for a in m["attempts"] if a not in dialled)
        assert [c for c in received_calls(carrier) if c["to"] == to], to
    finally:
        d.stop()
        await proxy.close()


async def test_a_call_while_asterisk_is_down_waits_and_is_dialled_once_it_is_back(
        client, auth, pool, carrier, gateway):
    await upload(client, auth, "down.wav", tone(440, 1.0))
    d = start_dispatcher(f"ari-down-{time.time_ns()}")
    to = phone()
    try:
        await wait_for(lambda: "voice: connected" in d.log(), 60, what="voice connected")
        await asyncio.to_thread(gateway.stop)
        try:
            await wait_for(lambda: "ARI events unavailable" in d.log(), 30,
                           what="the dispatcher to see ARI go")
            r = await client.post("/messages/voice", headers=auth, json={
                "from": "+46736265400", "to": to, "file": "down.wav", "retries": 0})
            assert r.status_code == 201, r.text
            message_id = r.json()["id"]
            await asyncio.sleep(3)  # long enough for a claim, if one were made
            m = (await client.get(f"/messages/voice/{message_id}", headers=auth)).json()
            assert (m["status"], m["attempts_made"], m["attempts"]) == ("queued", 0, []), m
        finally:
            await asyncio.to_thread(gateway.start)

        async def final() -> dict:
            m = (await client.get(f"/messages/voice/{message_id}", headers=auth)).json()
            return m if m["outcome"] is not None else {}

        m = await wait_for(final, 60, what="the call to end")
        assert (m["outcome"], m["attempts_made"], len(m["attempts"])) == ("completed", 1, 1), m
        assert [c for c in received_calls(carrier) if c["to"] == to], to
        assert d.alive(), d.log()[-3000:]
    finally:
        d.stop()


async def test_a_call_asterisk_keeps_refusing_ends_failed_after_five_refusals(
        client, auth, pool, gateway):
    """ARI answers 500 "Allocation failed" for lasting trouble too (a wrong
    trunk name on the node): five refusals in a row end the message."""
    await upload(client, auth, "refused.wav", tone(440, 1.0))
    proxy = RefusesOriginate(ARI_PORT, b"500 Internal Server Error", b"Allocation failed")
    port = await proxy.start()
    d = start_dispatcher(f"ari-refuses-always-{time.time_ns()}",
                         AMIVONO_ARI_URL=f"http://127.0.0.1:{port}/ari")
    try:
        await wait_for(lambda: "voice: connected" in d.log(), 60, what="voice connected")
        r = await client.post("/messages/voice", headers=auth, json={
            "from": "+46736265400", "to": phone(), "file": "refused.wav", "retries": 0})
        assert r.status_code == 201, r.text
        message_id = r.json()["id"]

        async def final() -> dict:
            m = (await client.get(f"/messages/voice/{message_id}", headers=auth)).json()
            return m if m["outcome"] is not None else {}

        m = await wait_for(final, 60, what="the message to end")
        assert (m["status"], m["outcome"], m["attempts_made"]) == ("failed", "failed", 0), m
        assert m["next_attempt_at"] is None and "Allocation failed" in m["cause_text"], m
        assert m["cause_text"].startswith("5 originates refused in a row"), m
        assert [a["outcome"] for a in m["attempts"]] == ["failed"] * 5, m["attempts"]
        assert all(a["detail"].startswith("not placed, Asterisk refused: ARI 500")
                   for a in m["attempts"]), m["attempts"]
        await asyncio.sleep(3)  # long enough for another try, if one were made
        assert proxy.refused == 5
        assert await pool.fetchval("SELECT count(*) FROM voice_attempts WHERE message_id = $1",
                                   message_id) == 5
    finally:
        d.stop()
        await proxy.close()


class Severable(RequestFilterProxy):
    """ARI whose connections can be cut (the event WebSocket too) and new
    ones refused, then let through again: a node lost to the dispatcher
    while its Asterisk, and the calls on it, go on."""

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self.cut = False

    async def intercept(self, request_line: bytes, client: asyncio.StreamWriter) -> bool:
        return False

    async def sever(self) -> None:
        self.cut = True
        await self.close_connections()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.close()
            return
        await super()._handle(reader, writer)


async def answered_then_severed(client, auth, proxy: Severable,
                                name: str) -> tuple[Any, str, int]:
    """A dispatcher through `proxy` places a call of a 3 s file; once it is
    answered the proxy cuts ARI (its end is never heard). (dispatcher, the
    number called, the message id); the caller stops both."""
    await upload(client, auth, "overdue.wav", tone(440, 3.0))
    port = await proxy.start()
    to = phone()
    # Reconnecting every second at most: the node is back within a held
    # hangup's 10 s (at the default 10 s backoff it may not be).
    d = start_dispatcher(f"{name}-{time.time_ns()}", AMIVONO_DIAL_TIMEOUT="2",
                         AMIVONO_GATEWAY_LOST_SECONDS="300",
                         AMIVONO_ARI_RECONNECT_MAX_SECONDS="1",
                         AMIVONO_ARI_URL=f"http://127.0.0.1:{port}/ari")
    try:
        await wait_for(lambda: "voice: connected" in d.log(), 60, what="voice connected")
        r = await client.post("/messages/voice", headers=auth, json={
            "from": "+46736265400", "to": to, "file": "overdue.wav", "retries": 0})
        assert r.status_code == 201, r.text
        message_id = r.json()["id"]

        async def answered() -> bool:
            m = (await client.get(f"/messages/voice/{message_id}", headers=auth)).json()
            return bool(m["attempts"] and m["attempts"][-1]["answered_at"])

        await wait_for(answered, 30, interval=0.1, what="the call answered")
        await proxy.sever()
    except BaseException:
        d.stop()
        await proxy.close()
        raise
    return d, to, message_id


async def ended_by_our_timer(client, auth, carrier, d: Any, to: str,
                             message_id: int) -> None:
    """The call ends failed with our timer's outcome, its channel hung up at
    the carrier, and the dispatcher still runs."""

    async def final() -> dict:
        m = (await client.get(f"/messages/voice/{message_id}", headers=auth)).json()
        return m if m["outcome"] is not None else {}

    m = await wait_for(final, 30, what="the call to end")
    assert m["outcome"] == "failed", m
    [attempt] = m["attempts"]
    assert attempt["detail"] == "the playback did not finish in time (our timer)", attempt
    await wait_for(lambda: [c for c in received_calls(carrier) if c["to"] == to], 10,
                   what="the carrier's record of the call's end")
    assert d.alive(), d.log()[-3000:]


async def test_a_call_whose_timer_ran_out_while_its_node_was_lost_is_hung_up_when_it_is_back(
        client, auth, pool, carrier, gateway):
    """The PlaybackFinished is lost with the node, so nothing hangs up; our
    timer runs out while the node is away and cannot hang up either. When
    the node is back with the channel still up, the reconcile ends it."""
    proxy = Severable(ARI_PORT)
    d, to, message_id = await answered_then_severed(client, auth, proxy, "ari-severed")
    try:
        m = (await client.get(f"/messages/voice/{message_id}", headers=auth)).json()
        channel = channel_id_for(m["attempts"][-1]["id"])
        # Our timer (ring deadline + the file + margin, ~35 s) runs out, and
        # its hangup cannot reach the node.
        await wait_for(lambda: f"hangup of {channel} failed" in d.log(), 90, interval=0.5,
                       what="the timer's hangup to fail")
        m = (await client.get(f"/messages/voice/{message_id}", headers=auth)).json()
        assert m["outcome"] is None and m["status"] == "calling", m
        assert not [c for c in received_calls(carrier) if c["to"] == to]  # still up
        proxy.cut = False
        await ended_by_our_timer(client, auth, carrier, d, to, message_id)
    finally:
        d.stop()
        await proxy.close()


class HoldsTheHangup(Severable):
    """Severable, but while cut it takes the first hangup (DELETE of a
    channel) and holds it, unanswered, until `release`: the node can come
    back while our timer's hangup is still under way, and that hangup then
    fails (its one retry by aiohttp, an idempotent DELETE, too)."""

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self.refuse = 0  # hangups still to cut once let through

    async def intercept(self, request_line: bytes, client: asyncio.StreamWriter) -> bool:
        if self.refuse and request_line.startswith(b"DELETE /ari/channels/"):
            self.refuse -= 1
            client.close()
            return True
        return False

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut and not self.held.is_set():
            first = await reader.read(65536)
            if first.startswith(b"DELETE /ari/channels/"):
                self.held.set()
                await self.release.wait()
                self.refuse = 1
            writer.close()
            return
        await super()._handle(reader, writer)


async def test_a_call_whose_node_came_back_while_the_timers_hangup_failed_is_hung_up(
        client, auth, pool, carrier, gateway):
    """Our timer runs out while the node is lost; its hangup is under way
    when the node comes back, and its reconcile passes the call by (the
    timer had not yet kept its end on the call). The hangup then fails: the
    node is back, so it is made again, and the channel does not stay up."""
    proxy = HoldsTheHangup(ARI_PORT)
    d, to, message_id = await answered_then_severed(client, auth, proxy, "ari-held")
    try:
        await wait_for(proxy.held.is_set, 90, interval=0.5, what="the timer's hangup")
        proxy.cut = False
        await wait_for(lambda: "reconciled 1 calls" in d.log(), 30, interval=0.2,
                       what="the reconcile, while the hangup is held")
        assert not [c for c in received_calls(carrier) if c["to"] == to]  # still up
        proxy.release.set()  # the timer's hangup fails
        await wait_for(lambda: "hangup of amivono-call-" in d.log(), 10, interval=0.2,
                       what="the timer's hangup to fail")
        await ended_by_our_timer(client, auth, carrier, d, to, message_id)
    finally:
        d.stop()
        await proxy.close()
