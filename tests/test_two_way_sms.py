"""Two-way SMS through both real Asterisks: numbers owned per account, inbound
SMS from the carrier simulator (replies, STOP/START/HELP), and the carrier's
delivery reports. The API here runs under the default sender policy, `owned`."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from sandbox.carrier_logs import received_calls, received_sms
from sandbox.instances import Instance
from sandbox.settings import SandboxSettings
from service.store import account_numbers, inbound_messages, sms_messages
from service.store.api_keys import create_key
from service.store.queries import queries

from .audio import tone
from .conftest import LAUNCH, SLOT, TEST_ENV, start_dispatcher, wait_for
from .sip_message import SipMessage

PORT = 28081 + SLOT * 100
BASE = f"http://127.0.0.1:{PORT}"
DLR_TIMEOUT = 6.0  # seconds before an unreported send shows `expired`
SETTINGS = SandboxSettings.from_env()
GATEWAY_SIP = ("127.0.0.1", SETTINGS.sip_port)
TRUNK = (SETTINGS.trunk_user, SETTINGS.trunk_password)


def number() -> str:
    """A Swedish mobile number no other test uses."""
    return f"+4673{secrets.randbelow(10**7):07d}"


@pytest.fixture(scope="module")
async def owned_api(db: str) -> AsyncIterator[str]:
    proc = await LAUNCH.api("api-owned", PORT, env={
        "AMIVONO_SENDER_POLICY": "owned", "AMIVONO_DLR_TIMEOUT": str(DLR_TIMEOUT),
        "AMIVONO_PUBLIC_BASE_URL": BASE, "AMIVONO_LINK_BASE_URL": f"{BASE}/l"})
    yield BASE
    proc.stop()


@pytest.fixture
async def http(owned_api: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=owned_api, timeout=20) as c:
        yield c


class Account:
    def __init__(self, pool: asyncpg.Pool, name: str, key: str, numbers: list[str]) -> None:
        self.pool, self.name, self.numbers = pool, name, numbers
        self.auth = {"Authorization": f"Bearer {key}"}

    @property
    def number(self) -> str:
        return self.numbers[0]


async def make_account(pool: asyncpg.Pool, *owned: str) -> Account:
    name = f"twoway-{os.getpid()}-{time.time_ns()}"
    key = await create_key(pool, name)
    account_id = await queries.accounts.id_by_name(pool, name=name)
    numbers = list(owned) or [number()]
    for n in numbers:
        await account_numbers.add(pool, account_id, n)
    return Account(pool, name, key, numbers)


def cli(*args: str) -> str:
    """`amivono ARGS` as the operator runs it."""
    out = subprocess.run([sys.executable, "-m", "service", *args], capture_output=True,
                         text=True, timeout=30, env={**os.environ, **TEST_ENV})
    assert out.returncode == 0, out.stderr
    return out.stdout


def refused_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service", *args], capture_output=True,
                          text=True, timeout=30, env={**os.environ, **TEST_ENV})


def phone_sends(from_phone: str, to_number: str, text: str) -> str:
    """The carrier simulator's phone sends an SMS, as `amivono carrier send-sms`."""
    return cli("carrier", "send-sms", from_phone, to_number, text)


async def post_sms(http: httpx.AsyncClient, account: Account, to: str,
                   **fields: Any) -> dict[str, Any]:
    body = {"from": account.number, "to": to, "message": "Alarm in hall 3", **fields}
    response = await http.post("/messages/sms", json=body, headers=account.auth)
    assert response.status_code == 201, response.text
    return response.json()


async def get_sms(http: httpx.AsyncClient, account: Account, sms_id: int) -> dict[str, Any]:
    response = await http.get(f"/messages/sms/{sms_id}", headers=account.auth)
    assert response.status_code == 200, response.text
    return response.json()


async def inbound_list(http: httpx.AsyncClient, account: Account) -> list[dict[str, Any]]:
    response = await http.get("/messages/inbound", headers=account.auth)
    assert response.status_code == 200, response.text
    return response.json()


def carrier_got(carrier: Instance, to: str, text: str | None = None) -> list[dict[str, Any]]:
    return [m for m in received_sms(carrier)
            if m["to"] == to and (text is None or m["body"].startswith(text))]


# --- numbers and the sender policy --------------------------------------------

async def test_from_not_owned_is_422_and_numbers_are_per_account(http, pool, sandbox):
    a, b = await make_account(pool), await make_account(pool)
    # a has the file, so only the sender's ownership can refuse the call.
    uploaded = await http.put("/files/beep.wav", content=tone(700, 0.5), headers=a.auth)
    assert uploaded.status_code == 201, uploaded.text
    for path, extra in (("/messages/sms", {"message": "hi"}),
                        ("/messages/voice", {"file": "beep.wav"})):
        response = await http.post(path, json={"from": b.number, "to": number(), **extra},
                                   headers=a.auth)
        assert response.status_code == 422, response.text
        error = response.json()["errors"][0]
        assert (error["field"], error["code"]) == ("from", "not_owned")
    mine = await http.get("/numbers", headers=a.auth)
    assert [n["number"] for n in mine.json()] == [a.number]
    # A number belongs to one account at most.
    account_id = await queries.accounts.id_by_name(pool, name=a.name)
    with pytest.raises(account_numbers.TakenNumber):
        await account_numbers.add(pool, account_id, b.number)


# --- inbound SMS -------------------------------------------------------------

async def test_a_reply_ends_the_repeats(http, pool, carrier, gateway, dispatcher):
    a = await make_account(pool, number(), number())
    phone = number()
    console_log = gateway.dir / "log" / "messages.log"
    console_start = console_log.stat().st_size
    sms = await post_sms(http, a, phone, repeat=10, repeat_interval=1)
    keeps = await post_sms(http, a, phone, repeat=10, repeat_interval=1, stop_on_reply=False)
    # The reply goes to a.number: SMS from the account's other number go on.
    other_line = await post_sms(http, a, phone, repeat=10, repeat_interval=1,
                                **{"from": a.numbers[1]})
    await wait_for(lambda: len(carrier_got(carrier, phone)) >= 4, 20, what="first sends")

    phone_sends(phone, a.number, "Got it, on my way")
    replied = await wait_for(
        lambda: _status(http, a, sms["id"], "replied"), 15, what="status replied")
    assert replied["sent_count"] < 10 and replied["repeat"] == 0
    inbound = (await inbound_list(http, a))[0]
    assert (inbound["from"], inbound["to"], inbound["kind"]) == (phone, a.number, "reply")
    assert inbound["message"] == "Got it, on my way"
    assert replied["reply_id"] == inbound["id"] and inbound["affected"] == [sms["id"]]
    one = await http.get(f"/messages/inbound/{inbound['id']}", headers=a.auth)
    assert one.json() == inbound

    # No more sends after the reply (one already in flight may still arrive).
    before = replied["sent_count"]
    await asyncio.sleep(3)
    assert (await get_sms(http, a, sms["id"]))["sent_count"] <= before + 1
    # stop_on_reply false keeps repeating.
    for going_on in (keeps, other_line):
        still = await get_sms(http, a, going_on["id"])
        assert still["status"] in ("scheduled", "sending") and still["replied_at"] is None
    with console_log.open() as f:
        f.seek(console_start)
        console = f.read()
    assert f"'inbound SMS {inbound['id']} from {phone} to {a.number}: reply" in console


async def _status(http: httpx.AsyncClient, account: Account, sms_id: int,
                  status: str) -> dict[str, Any] | None:
    found = await get_sms(http, account, sms_id)
    return found if found["status"] == status else None


async def test_stop_opts_out_confirms_once_and_start_opts_back_in(
        http, pool, carrier, dispatcher):
    a = await make_account(pool, number(), number())
    phone = number()
    first = await post_sms(http, a, phone, repeat=10, repeat_interval=2)
    second_body = {"from": a.numbers[1], "to": phone, "message": "Other line", "repeat": 5,
                   "repeat_interval": 2}
    second = (await http.post("/messages/sms", json=second_body, headers=a.auth)).json()
    await wait_for(lambda: len(carrier_got(carrier, phone)) >= 2, 20, what="first sends")

    phone_sends(phone, a.numbers[1], "  stop ")  # trimmed, any case
    for sms_id in (first["id"], second["id"]):
        await wait_for(lambda i=sms_id: _status(http, a, i, "opted_out"), 15,
                       what="both opted out")
    stop = (await inbound_list(http, a))[0]
    assert stop["kind"] == "stop" and sorted(stop["affected"]) == sorted(
        [first["id"], second["id"]])
    refused = await http.post("/messages/sms", json={
        "from": a.number, "to": phone, "message": "hello"}, headers=a.auth)
    assert refused.status_code == 422
    assert [(e["field"], e["code"]) for e in refused.json()["errors"]] == [("to", "opted_out")]
    opt_outs = (await http.get("/opt-outs", headers=a.auth)).json()
    assert [(o["phone"], o["inbound_id"]) for o in opt_outs] == [(phone, stop["id"])]
    confirmation = SETTINGS.stop_reply
    await wait_for(lambda: carrier_got(carrier, phone, confirmation), 15,
                   what="the STOP confirmation")
    # A second STOP changes nothing and is not confirmed again.
    phone_sends(phone, a.numbers[1], "STOP")
    await wait_for(lambda: _count_inbound(http, a, 2), 15, what="second STOP stored")
    await asyncio.sleep(2)
    assert len(carrier_got(carrier, phone, confirmation)) == 1
    assert carrier_got(carrier, phone, confirmation)[0]["from"] == a.numbers[1]

    phone_sends(phone, a.numbers[1], "Start")
    await wait_for(lambda: carrier_got(carrier, phone, SETTINGS.start_reply), 15,
                   what="the START confirmation")
    assert (await http.get("/opt-outs", headers=a.auth)).json() == []
    await post_sms(http, a, phone)


async def _count_inbound(http: httpx.AsyncClient, account: Account, n: int) -> bool:
    return len(await inbound_list(http, account)) >= n


async def _escalated(http: httpx.AsyncClient, account: Account,
                     sms_id: int) -> dict[str, Any] | None:
    found = await get_sms(http, account, sms_id)
    return found if found["escalated_to"] else None


async def _voice_finished(http: httpx.AsyncClient, account: Account,
                          voice_id: int) -> dict[str, Any] | None:
    response = await http.get(f"/messages/voice/{voice_id}", headers=account.auth)
    found: dict[str, Any] = response.json()
    return found if found["outcome"] is not None else None


async def _answered_after_the_last_send(http: httpx.AsyncClient, pool: asyncpg.Pool,
                                        carrier: Instance, how: str) -> None:
    a = await make_account(pool)
    phone = number()
    # The second (last) send escalates; the call is due one repeat_interval (20 s)
    # later: the time to answer the SMS before the call is placed.
    sms = await post_sms(http, a, phone, repeat=2, repeat_interval=20,
                         escalate={"after": 2, "text": "Alarm in hall 3."})
    sent = await wait_for(lambda: _escalated(http, a, sms["id"]), 60, interval=0.2,
                          what=f"the escalation ({how})")
    assert sent["status"] == "completed" and sent["sent_count"] == 2, sent
    queued = (await http.get(f"/messages/voice/{sent['escalated_to']}",
                             headers=a.auth)).json()
    assert queued["status"] == "queued", queued
    if how == "canceled":
        response = await http.delete(f"/messages/sms/{sms['id']}", headers=a.auth)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "canceled"
    else:
        await asyncio.to_thread(phone_sends, phone, a.number,
                                "On my way" if how == "replied" else "STOP")
    voice = await wait_for(lambda: _voice_finished(http, a, sent["escalated_to"]), 15,
                           interval=0.2, what=f"the escalation call ended ({how})")
    assert voice["status"] == "canceled" and voice["calls_made"] == 0, voice
    assert voice["cause_text"].startswith("the SMS it escalated was "), voice
    assert (await get_sms(http, a, sms["id"]))["status"] == how
    assert [c for c in received_calls(carrier) if c["to"] == phone] == []


async def test_a_reply_stop_or_cancel_after_the_last_send_ends_the_escalation_call(
        http, pool, carrier, dispatcher):
    # escalate.after == repeat: the SMS is completed when its call is created.
    await asyncio.gather(*(_answered_after_the_last_send(http, pool, carrier, how)
                           for how in ("replied", "opted_out", "canceled")))


async def test_help_gets_the_help_text(http, pool, carrier, dispatcher):
    a = await make_account(pool)
    phone = number()
    phone_sends(phone, a.number, "help")
    await wait_for(lambda: carrier_got(carrier, phone, SETTINGS.help_reply), 15,
                   what="the help text")
    assert (await inbound_list(http, a))[0]["kind"] == "help"


async def test_inbound_to_an_unowned_number_harms_nothing(http, pool, carrier, dispatcher):
    a = await make_account(pool)
    phone, nobodys = number(), number()
    sms = await post_sms(http, a, phone, repeat=5, repeat_interval=2)
    phone_sends(phone, nobodys, "STOP")
    unrouted = await wait_for(lambda: _unrouted(pool, nobodys), 15, what="stored unrouted")
    assert unrouted["kind"] == "stop" and unrouted["account_id"] is None
    assert (await get_sms(http, a, sms["id"]))["status"] in ("queued", "sending", "scheduled")
    assert (await http.get("/opt-outs", headers=a.auth)).json() == []
    assert await inbound_list(http, a) == []
    # The operator's --unrouted shows it, and nothing an account got.
    c = await make_account(pool)
    phone_sends(number(), c.number, "routed")
    await wait_for(lambda: _count_inbound(http, c, 1), 15, what="c's inbound")
    listed = json.loads(cli("messages", "inbound", "--unrouted", "--json", "--limit", "1000"))
    assert nobodys in {m["to"] for m in listed}
    assert all(m["account"] is None for m in listed)


async def _unrouted(pool: asyncpg.Pool, to: str) -> Any:
    return await pool.fetchrow("SELECT * FROM inbound_messages WHERE to_number = $1", to)


async def test_tenants_never_see_each_others_inbound_opt_outs_or_numbers(
        http, pool, carrier, dispatcher):
    a, b = await make_account(pool), await make_account(pool)
    phone = number()
    b_sms = await post_sms(http, b, phone, repeat=5, repeat_interval=2)
    phone_sends(phone, a.number, "STOP")
    await wait_for(lambda: _count_inbound(http, a, 1), 15, what="a's inbound")
    # a's STOP stops none of b's SMS to the phone.
    b_going = await get_sms(http, b, b_sms["id"])
    assert b_going["status"] in ("queued", "sending", "scheduled"), b_going
    assert b_going["opted_out_at"] is None
    inbound_id = (await inbound_list(http, a))[0]["id"]
    assert await inbound_list(http, b) == []
    assert (await http.get(f"/messages/inbound/{inbound_id}", headers=b.auth)).status_code == 404
    assert (await http.get("/opt-outs", headers=b.auth)).json() == []
    assert [n["number"] for n in (await http.get("/numbers", headers=b.auth)).json()] == [
        b.number]
    # b may still write to the phone that opted out of a.
    await post_sms(http, b, phone)


async def test_a_duplicate_message_is_stored_once_and_only_the_trunk_may_deliver(
        http, pool, dispatcher):
    a = await make_account(pool)
    phone = number()
    message = SipMessage(GATEWAY_SIP, phone, a.number, "once")
    assert message.send(*TRUNK) == 202
    assert message.send(*TRUNK) == 202  # the same Call-ID and CSeq again
    await wait_for(lambda: _count_inbound(http, a, 1), 15, what="stored")
    await asyncio.sleep(1.5)
    assert len(await inbound_list(http, a)) == 1
    # Without the trunk's credentials, from loopback or from another address.
    for host in ("127.0.0.1", "127.0.0.2"):
        status = SipMessage(GATEWAY_SIP, phone, a.number, "forged", local_host=host).send()
        assert status in (401, 403, 404), status
    wrong = SipMessage(GATEWAY_SIP, phone, a.number, "forged").send(TRUNK[0], "wrong")
    assert wrong in (401, 403), wrong
    await asyncio.sleep(1.5)
    assert [m["message"] for m in await inbound_list(http, a)] == ["once"]


async def test_a_dispatcher_killed_while_sms_arrive_loses_none(http, pool, sandbox, db):
    """The only dispatcher is killed with SIGKILL while SMS arrive; the ones
    that came while it was dead (Asterisk said 202 to each) are stored when a
    dispatcher is back, each once."""
    a = await make_account(pool)
    proc = start_dispatcher(f"inbound-a-{time.time_ns()}")
    try:
        await wait_for(lambda: "inbound SMS: subscribed" in proc.log(), 30, what="subscribed")
        for i in range(30):
            if i == 10:
                proc.signal(signal.SIGKILL)
                proc.wait()
            if i == 20:
                proc = start_dispatcher(f"inbound-b-{time.time_ns()}")
            assert SipMessage(GATEWAY_SIP, number(), a.number, f"m{i}").send(*TRUNK) == 202
            await asyncio.sleep(0.05)
        await wait_for(lambda: _count_inbound(http, a, 30), 30, what="all 30 stored")
        await asyncio.sleep(1.5)
        stored = await inbound_list(http, a)
        assert sorted(m["message"] for m in stored) == sorted(f"m{i}" for i in range(30))
    finally:
        proc.stop()


# --- delivery reports ----------------------------------------------------------

async def _attempts(http: httpx.AsyncClient, account: Account, sms_id: int) -> list[Any]:
    return (await get_sms(http, account, sms_id))["attempts"]


async def test_reports_mark_delivered_undelivered_and_expired(http, pool, carrier, dispatcher):
    a = await make_account(pool)
    delivered = await post_sms(http, a, number())
    undelivered = await post_sms(http, a, "+46700000033")
    silent = await post_sms(http, a, "+46700000035")

    done = await wait_for(lambda: _delivered(http, a, delivered["id"]), 20,
                          what="delivered report")
    attempt = done["attempts"][0]
    assert attempt["outcome"] == "delivered" and attempt["error"] == "000"
    assert done["delivered_count"] == 1 and done["delivered_at"] is not None

    # Undelivered: reported with the carrier's error, and retried like a failure.
    attempts = await wait_for(
        lambda: _at_least(http, a, undelivered["id"], 2), 30, what="a retry")
    assert attempts[0]["outcome"] == "undelivered" and attempts[0]["error"] == "001"
    assert (await get_sms(http, a, undelivered["id"]))["delivered_count"] == 0

    # Never reported: `sent` until the DLR timeout, then `expired`.
    first = await wait_for(lambda: _first_finished(http, a, silent["id"]), 20, what="sent")
    assert first["outcome"] == "sent"
    expired = await wait_for(lambda: _first_outcome(http, a, silent["id"], "expired"),
                             DLR_TIMEOUT + 10, what="expired")
    assert expired["error"] is None


async def _delivered(http: httpx.AsyncClient, account: Account, sms_id: int) -> Any:
    found = await get_sms(http, account, sms_id)
    return found if found["delivered_count"] else None


async def _at_least(http: httpx.AsyncClient, account: Account, sms_id: int, n: int) -> Any:
    attempts = await _attempts(http, account, sms_id)
    return attempts if len(attempts) >= n and attempts[0]["outcome"] != "sent" else None


async def _first_finished(http: httpx.AsyncClient, account: Account, sms_id: int) -> Any:
    attempts = await _attempts(http, account, sms_id)
    return attempts[0] if attempts and attempts[0]["finished_at"] else None


async def _first_outcome(http: httpx.AsyncClient, account: Account, sms_id: int,
                         outcome: str) -> Any:
    attempts = await _attempts(http, account, sms_id)
    return attempts[0] if attempts and attempts[0]["outcome"] == outcome else None


async def test_a_duplicate_report_changes_nothing(http, pool, carrier, dispatcher):
    a = await make_account(pool)
    phone = number()
    sms = await post_sms(http, a, phone)
    done = await wait_for(lambda: _delivered(http, a, sms["id"]), 20, what="delivered")
    ref = done["attempts"][0]["id"]
    receipt = (f"id:{ref} sub:001 dlvrd:001 submit date:2611271200 done date:2611271200 "
               "stat:DELIVRD err:000 text:Alarm in hall 3")
    for _ in range(2):  # new requests (new Call-IDs), the same receipt
        report = SipMessage(GATEWAY_SIP, phone, a.number, receipt,
                            headers={"X-Delivery-Report": "yes"})
        assert report.send(*TRUNK) == 202
    await asyncio.sleep(2)
    again = await get_sms(http, a, sms["id"])
    assert again["delivered_count"] == 1 and again["status"] == "completed"
    assert again["attempts"][0]["reported_at"] == done["attempts"][0]["reported_at"]


async def _in_flight(pool: asyncpg.Pool, account: Account, phone: str,
                     repeat_total: int = 1) -> tuple[int, int]:
    """An SMS whose first send is in flight, as a claim leaves it (leased,
    due_at the lease's end): its id and the attempt's."""
    account_id = await queries.accounts.id_by_name(pool, name=account.name)
    message_id = await pool.fetchval(
        "INSERT INTO sms_messages (account_id, from_number, to_number, text, body, encoding,"
        " segments, repeat_total, repeat_interval, due_at) VALUES ($1, $2, $3, 'x', 'x',"
        " 'GSM-7', 1, $4, 1, now() + interval '1 minute') RETURNING id",
        account_id, account.number, phone, repeat_total)
    attempt_id = await pool.fetchval(
        "INSERT INTO sms_attempts (message_id, send_number, dispatcher, transport)"
        " VALUES ($1, 1, 'test', 'ari-pjsip') RETURNING id", message_id)
    await pool.execute("UPDATE sms_messages SET lease_attempt_id = $1 WHERE id = $2",
                       attempt_id, message_id)
    return message_id, attempt_id


async def _finish_sent(pool: asyncpg.Pool, attempt_id: int) -> None:
    await sms_messages.finish_send(
        pool, attempt_id=attempt_id, outcome="sent", detail="handed over", gateway=None,
        max_failures=5,
        minute_seconds=1.0, retry_seconds=5.0)


async def test_a_reply_while_a_send_is_in_flight_ends_the_repeats(pool, settings):
    """Straight against PostgreSQL: the send in flight finishes and counts,
    and no repeat is scheduled after it."""
    a = await make_account(pool)
    phone = number()
    message_id, attempt_id = await _in_flight(pool, a, phone, repeat_total=5)
    stored = await inbound_messages.record(
        pool, from_number=phone, to_number=a.number, body="ok",
        sip_key=f"test-{secrets.token_hex(8)}/1", settings=settings)
    assert stored is not None and stored.affected == [message_id]
    await _finish_sent(pool, attempt_id)
    row = await pool.fetchrow("SELECT * FROM sms_message_view WHERE id = $1", message_id)
    assert row["status"] == "replied" and row["sent_count"] == 1 and row["due_at"] is None


async def test_a_report_that_arrives_first_still_matches(pool, settings):
    """Straight against PostgreSQL: the report is stored while the attempt is
    still open, and finish_send then counts the send as undelivered."""
    a = await make_account(pool)
    message_id, attempt_id = await _in_flight(pool, a, number())
    from service.domain.delivery_receipts import parse_receipt

    receipt = parse_receipt(f"id:{attempt_id} sub:001 dlvrd:000 submit date:2611271200 "
                            "done date:2611271200 stat:UNDELIV err:001 text:x")
    assert await inbound_messages.record_report(pool, receipt, "r", settings) is not None
    assert await inbound_messages.record_report(pool, receipt, "r", settings) is None
    await _finish_sent(pool, attempt_id)
    row = await pool.fetchrow("SELECT * FROM sms_message_view WHERE id = $1", message_id)
    # Not counted as a send, and due again: retried like a failed send.
    assert row["sent_count"] == 0 and row["failures"] == 1 and row["due_at"] is not None
    assert row["status"] == "queued" and row["delivered_count"] == 0


async def test_the_operator_gives_and_takes_numbers(http, pool, db):
    a, other = await make_account(pool), await make_account(pool)
    extra = number()
    assert cli("numbers", "add", a.name, extra).strip() == f"{extra}: {a.name}'s"
    listed = {n["number"] for n in json.loads(cli("numbers", "list", "--account", a.name,
                                                  "--json"))}
    assert listed == {a.number, extra}
    assert [n["number"] for n in (await http.get("/numbers", headers=a.auth)).json()] == sorted(
        [a.number, extra])
    taken = refused_cli("numbers", "add", other.name, extra)
    assert taken.returncode != 0 and "another account" in taken.stderr
    cli("numbers", "remove", a.name, extra)
    assert [n["number"] for n in (await http.get("/numbers", headers=a.auth)).json()] == [
        a.number]


async def test_a_send_stored_while_its_phone_said_stop_is_stopped_at_its_claim(pool, db):
    """A POST racing a STOP can be stored after the STOP looked for pending
    sends; the claim looks again, and the message ends opted out, unsent."""
    a = await make_account(pool)
    phone = number()
    account_id = await queries.accounts.id_by_name(pool, name=a.name)
    await pool.execute("INSERT INTO opt_outs (account_id, phone) VALUES ($1, $2)",
                       account_id, phone)
    message_id = await pool.fetchval(
        "INSERT INTO sms_messages (account_id, from_number, to_number, text, body, encoding,"
        " segments, repeat_total, due_at) VALUES ($1, $2, $3, 'x', 'x', 'GSM-7', 1, 3,"
        " now() - interval '1 day') RETURNING id", account_id, a.number, phone)
    await queries.sms_messages.claim_due_sends(
        pool, limit=1, dispatcher="test", transport="ari-pjsip", ready=["ari-pjsip"],
        lease_seconds=60.0)
    row = await pool.fetchrow("SELECT * FROM sms_message_view WHERE id = $1", message_id)
    assert row["status"] == "opted_out" and row["due_at"] is None
    assert await pool.fetchval("SELECT count(*) FROM sms_attempts WHERE message_id = $1",
                               message_id) == 0
