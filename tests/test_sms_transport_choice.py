"""Per-account SMS transport: one account's SMS go to a GSM modem through
chan_dongle over AMI, another's over the SIP trunk, from one dispatcher."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

from sandbox.carrier_logs import received_sms

from .ami_peer import AmiPeer, header
from .conftest import start_dispatcher, wait_for

SMS = {"from": "+46736265400", "to": "+46736265449", "message": "Via the modem\r\nAction: x"}


async def account_name(pool, auth) -> str:
    key = auth["Authorization"].split(" ", 1)[1]
    return await pool.fetchval(
        "SELECT a.name FROM accounts a JOIN api_keys k ON k.account_id = a.id "
        "WHERE k.key_hash = sha256($1::bytea)", key.encode())


async def test_account_on_dongle_and_account_on_trunk(client, new_key, pool, carrier):
    modem_user = {"Authorization": f"Bearer {await new_key()}"}
    trunk_user = {"Authorization": f"Bearer {await new_key()}"}
    name = await account_name(pool, modem_user)
    result = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "service", "keys", "transport", name, "dongle-ami"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "dongle-ami" in result.stdout, result.stderr

    async with AmiPeer("amivono", "amivono-ami-secret",
                       failing_numbers=("+46736265450",)) as peer:
        proc = start_dispatcher(f"modem-{time.time_ns()}", AMIVONO_DONGLE_DEVICE="dongle0",
                                AMIVONO_AMI_PORT=str(peer.port))
        try:
            await wait_for(lambda: "sms: connected" in proc.log(), 15, what="dispatcher")
            by_modem = (await client.post("/messages/sms", json=SMS,
                                          headers=modem_user)).json()
            refused = (await client.post("/messages/sms", headers=modem_user,
                                         json={**SMS, "to": "+46736265450"})).json()
            by_trunk = (await client.post("/messages/sms", json=SMS,
                                          headers=trunk_user)).json()

            async def outcome(message_id: int) -> str | None:
                return await pool.fetchval(
                    "SELECT transport || ':' || outcome FROM sms_attempts "
                    "WHERE message_id = $1 AND outcome IS NOT NULL ORDER BY id LIMIT 1",
                    message_id)
            assert await wait_for(lambda: outcome(by_modem["id"]), 15) == "dongle-ami:sent"
            assert await wait_for(lambda: outcome(refused["id"]), 15) == "dongle-ami:failed"
            assert await wait_for(lambda: outcome(by_trunk["id"]), 15) == "ari-pjsip:sent"
        finally:
            proc.stop()
        sends = peer.named("DongleSendSMS")
        numbers = [header(a, "Number") for a in sends]
        assert "+46736265449" in numbers and "+46736265450" in numbers
        message = header(sends[numbers.index("+46736265449")], "Message")
        assert message == "Via the modem  Action: x"  # CR/LF never reach AMI
        assert not peer.named("x")
    arrived = [m for m in received_sms(carrier) if m["message_id"] == str(by_trunk["id"])]
    assert len(arrived) == 1
    assert not [m for m in received_sms(carrier) if m["message_id"] == str(by_modem["id"])]


async def test_a_transport_down_holds_its_accounts_sms_without_failing_them(
        client, new_key, pool, carrier):
    modem_user = {"Authorization": f"Bearer {await new_key()}"}
    trunk_user = {"Authorization": f"Bearer {await new_key()}"}
    await pool.execute(
        "UPDATE accounts SET sms_transport = 'dongle-ami' WHERE name = $1",
        await account_name(pool, modem_user))
    # The modem's AMI is unreachable (nothing listens on port 9).
    proc = start_dispatcher(f"modemless-{time.time_ns()}", AMIVONO_DONGLE_DEVICE="dongle0",
                            AMIVONO_AMI_PORT="9")
    try:
        await wait_for(lambda: "sms: connected" in proc.log(), 15, what="dispatcher")
        held = (await client.post("/messages/sms", json=SMS, headers=modem_user)).json()
        sent = (await client.post("/messages/sms", json=SMS, headers=trunk_user)).json()
        await wait_for(lambda: [m for m in received_sms(carrier)
                                if m["message_id"] == str(sent["id"])], 15, what="trunk SMS")
        await asyncio.sleep(1.5)
        assert await pool.fetchval(
            "SELECT count(*) FROM sms_attempts WHERE message_id = $1", held["id"]) == 0
        status = (await client.get(f"/messages/sms/{held['id']}", headers=modem_user)).json()
        assert status["status"] == "queued"
    finally:
        proc.stop()
