"""chan_dongle over AMI against a fake Asterisk that speaks the AMI wire
protocol byte for byte (tests/ami_peer.py); no database, no real Asterisk."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from service.delivery.dongle_transport import DongleAmiTransport
from service.delivery.sms_transports import OutgoingSms

from .ami_peer import GREETING, AmiPeer, header
from .conftest import wait_for

USER = "amivono"
SECRET = "ami-secret"
TO = "+46736265449"

Start = Callable[..., Awaitable[DongleAmiTransport]]


def sms(body: str = "hello", to: str = TO) -> OutgoingSms:
    return OutgoingSms(1, 1, "+46700000000", to, body)


@pytest.fixture
async def peer() -> AsyncIterator[AmiPeer]:
    async with AmiPeer(USER, SECRET) as p:
        yield p


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """Starts transports' run() loops; stops them (stop event, then close) afterwards."""
    running: list[tuple[DongleAmiTransport, asyncio.Event, asyncio.Task[None]]] = []

    async def start_(
        peer: AmiPeer,
        *,
        username: str = USER,
        secret: str = SECRET,
        device: str = "dongle0",
        wait_ready: bool = True,
        **kwargs: Any,
    ) -> DongleAmiTransport:
        kwargs.setdefault("reconnect_min", 0.05)
        kwargs.setdefault("reconnect_max", 0.2)
        transport = DongleAmiTransport("127.0.0.1", peer.port, username, secret, device, **kwargs)
        stop = asyncio.Event()
        running.append((transport, stop, asyncio.create_task(transport.run(stop))))
        if wait_ready:
            await wait_for(transport.ready, 5, what="AMI login")
        return transport

    yield start_
    for transport, stop, task in running:
        stop.set()
        await asyncio.wait_for(task, 5)
        await transport.close()


def sends(peer: AmiPeer) -> list[list[tuple[str, str]]]:
    return peer.named("DongleSendSMS")


async def test_sent(peer: AmiPeer, start: Start) -> None:
    transport = await start(peer)
    result = await transport.send(sms("hello"))
    assert result.outcome == "sent", result
    assert "Sent" in result.detail
    [login, send] = peer.actions
    assert header(login, "Action") == "Login" and header(login, "Secret") == SECRET
    # panoramisk writes headers sorted by name; the peer recorded them as they came.
    action_id = header(send, "ActionID")
    assert send == [
        ("Action", "DongleSendSMS"),
        ("ActionID", action_id),
        ("Device", "dongle0"),
        ("Message", "hello"),
        ("Number", TO),
    ]


async def test_not_sent_is_failed(start: Start) -> None:
    async with AmiPeer(USER, SECRET, failing_numbers=(TO,)) as peer:
        transport = await start(peer)
        result = await transport.send(sms())
        assert result.outcome == "failed"
        assert "NotSent" in result.detail
        await transport.close()


async def test_error_response_is_failed(peer: AmiPeer, start: Start) -> None:
    transport = await start(peer, device="dongle1")
    result = await transport.send(sms())
    assert result.outcome == "failed"
    assert result.detail == "[dongle1] Device not found"


async def test_no_status_times_out(start: Start) -> None:
    async with AmiPeer(USER, SECRET, silent_numbers=(TO,)) as peer:
        transport = await start(peer, status_timeout=0.3)
        began = time.monotonic()
        result = await transport.send(sms())
        assert result.outcome == "failed"
        assert result.detail.startswith("no DongleSMSStatus within 0.3 s")
        assert time.monotonic() - began < 2
        await transport.close()


async def test_wrong_password_never_ready_and_never_sends(peer: AmiPeer, start: Start) -> None:
    transport = await start(peer, secret="wrong", wait_ready=False)
    deadline = time.monotonic() + 0.6
    while time.monotonic() < deadline:
        assert not transport.ready()
        await asyncio.sleep(0.02)
    result = await transport.send(sms())
    assert result.outcome == "failed"
    assert result.detail.startswith("not logged in to AMI")
    logins = peer.named("Login")
    assert len(logins) >= 2, "it keeps retrying with backoff"
    assert all(header(a, "Action") == "Login" for a in peer.actions)


async def test_line_breaks_cannot_inject_headers_or_actions(peer: AmiPeer, start: Start) -> None:
    transport = await start(peer)
    body = "hi\r\nAction: Originate\r\nChannel: PJSIP/x\nContext: a\rb\r\n\r\nAction: Logoff"
    result = await transport.send(sms(body))
    assert result.outcome == "sent", result
    [send] = sends(peer)
    assert [k for k, _ in send] == ["Action", "ActionID", "Device", "Message", "Number"]
    message = header(send, "Message")
    assert "\r" not in message and "\n" not in message
    assert message == body.replace("\r", " ").replace("\n", " ")
    assert [header(a, "Action") for a in peer.actions] == ["Login", "DongleSendSMS"]
    assert all(k != "Channel" for a in peer.actions for k, _ in a)
    assert transport.ready(), "no injected Logoff ended the session"


async def test_line_breaks_in_credentials_are_removed(peer: AmiPeer, start: Start) -> None:
    await start(peer, username="amivono\r\nAction: Originate", wait_ready=False)
    await wait_for(lambda: peer.named("Login"), 5, what="a login attempt")
    await asyncio.sleep(0.1)
    assert all(header(a, "Action") == "Login" for a in peer.actions)
    assert header(peer.actions[0], "Username") == "amivono  Action: Originate"


def test_device_name_is_validated() -> None:
    for bad in ("dongle0\r\nAction: Originate", "", "a" * 33, "dongle 0", "dongle0;x"):
        with pytest.raises(ValueError):
            DongleAmiTransport("127.0.0.1", 5038, USER, SECRET, bad)


@pytest.mark.parametrize("number", ["+4673&x", "+46 73", "0736265449", "+4673\r\nAction: Ping"])
async def test_bad_number_never_reaches_the_wire(
    peer: AmiPeer, start: Start, number: str
) -> None:
    transport = await start(peer)
    result = await transport.send(sms(to=number))
    assert result.outcome == "failed"
    assert "not E.164" in result.detail
    await asyncio.sleep(0.05)
    assert [header(a, "Action") for a in peer.actions] == ["Login"]


async def test_reconnects_after_the_peer_drops(peer: AmiPeer, start: Start) -> None:
    transport = await start(peer, reconnect_min=0.2)
    await peer.drop_clients()
    await wait_for(lambda: not transport.ready(), 2, interval=0.005, what="loss noticed")
    await wait_for(transport.ready, 5, what="logged in again")
    assert peer.connections == 2
    assert len(peer.named("Login")) == 2
    result = await transport.send(sms())
    assert result.outcome == "sent", result


async def test_drop_while_waiting_for_status_fails_at_once(start: Start) -> None:
    async with AmiPeer(USER, SECRET, silent_numbers=(TO,)) as peer:
        transport = await start(peer)
        pending = asyncio.create_task(transport.send(sms()))
        await wait_for(lambda: sends(peer), 2, what="DongleSendSMS on the wire")
        await asyncio.sleep(0.05)
        await peer.drop_clients()
        result = await asyncio.wait_for(pending, 2)
        assert result.outcome == "failed"
        assert "connection lost" in result.detail and "may be sent" in result.detail
        await wait_for(transport.ready, 5, what="logged in again")
        assert len(sends(peer)) == 1, "the SMS is not re-sent on the new connection"
        await transport.close()


async def test_status_read_with_the_response_still_matches(start: Start) -> None:
    # Response and event in one write: panoramisk dispatches the event before
    # the coroutine awaiting the response runs. A short timeout proves the
    # event was kept, not merely waited for.
    async with AmiPeer(USER, SECRET, status_delay=0) as peer:
        transport = await start(peer, status_timeout=0.5)
        for _ in range(3):
            result = await transport.send(sms())
            assert result.outcome == "sent", result
        await transport.close()


async def test_status_before_the_response_on_the_wire_is_not_ours(start: Start) -> None:
    # chan_dongle's ID is a task address (%p) and addresses are reused: an
    # event with our ID that precedes our response belongs to an older SMS.
    async with AmiPeer(USER, SECRET, stale_status_first=True, status_delay=0.05) as peer:
        transport = await start(peer, status_timeout=2)
        result = await transport.send(sms())
        assert result.outcome == "sent", result
        await transport.close()


async def test_status_of_another_device_is_not_ours(start: Start) -> None:
    async with AmiPeer(USER, SECRET, silent_numbers=(TO,)) as peer:
        transport = await start(peer, status_timeout=2)
        pending = asyncio.create_task(transport.send(sms()))
        await wait_for(lambda: peer.issued_ids, 2, what="an SMS ID")
        await asyncio.sleep(0.05)
        peer.emit_status("dongle1", peer.issued_ids[0], "NotSent")
        await asyncio.sleep(0.05)
        assert not pending.done()
        peer.emit_status("dongle0", peer.issued_ids[0], "Sent")
        result = await asyncio.wait_for(pending, 2)
        assert result.outcome == "sent", result
        await transport.close()


async def test_concurrent_sends_match_their_own_status(start: Start) -> None:
    failing = "+46700000001"
    async with AmiPeer(USER, SECRET, failing_numbers=(failing,), status_delay=0.05) as peer:
        transport = await start(peer)
        results = await asyncio.gather(*(transport.send(sms(to=n)) for n in (TO, failing, TO)))
        assert [r.outcome for r in results] == ["sent", "failed", "sent"]
        await transport.close()


async def test_stop_logs_off(peer: AmiPeer) -> None:
    transport = DongleAmiTransport("127.0.0.1", peer.port, USER, SECRET, "dongle0")
    stop = asyncio.Event()
    task = asyncio.create_task(transport.run(stop))
    await wait_for(transport.ready, 5, what="AMI login")
    stop.set()
    await asyncio.wait_for(task, 3)
    assert not transport.ready()
    assert header(peer.actions[-1], "Action") == "Logoff"
    await transport.close()


async def test_stop_is_prompt_while_login_hangs(peer: AmiPeer) -> None:
    """A stop ends run() while its Login is still unanswered: it does not wait
    for the login's timeout, and nothing more is sent or tried after it."""
    peer.muted = True
    # A login timeout far beyond the bound below: only the stop can end run() in time.
    transport = DongleAmiTransport("127.0.0.1", peer.port, USER, SECRET, "dongle0",
                                   response_timeout=120)
    stop = asyncio.Event()
    task = asyncio.create_task(transport.run(stop))
    await wait_for(lambda: peer.named("Login"), 10, what="a login attempt")
    await asyncio.sleep(0)
    assert not task.done()  # the login hangs: run() waits for it
    stop.set()
    # Ended by the stop: a generous bound, yet a tenth of the login's timeout.
    await asyncio.wait_for(task, 12)
    assert task.result() is None
    assert not transport.ready()
    # In order: one connection, one Login never answered, then nothing (no
    # Logoff for a session never logged in, no reconnect after the stop).
    assert peer.connections == 1
    assert [header(a, "Action") for a in peer.actions] == ["Login"]
    await transport.close()


async def test_keepalive_pings(start: Start) -> None:
    async with AmiPeer(USER, SECRET) as peer:
        transport = await start(peer, ping_interval=0.1)
        await wait_for(lambda: len(peer.named("Ping")) >= 2, 3, what="pings")
        assert transport.ready()
        await transport.close()


async def test_unanswered_ping_means_reconnect(start: Start) -> None:
    async with AmiPeer(USER, SECRET) as peer:
        transport = await start(peer, ping_interval=0.1, response_timeout=0.2)
        peer.muted = True
        await wait_for(lambda: not transport.ready(), 2, interval=0.01, what="hung peer noticed")
        peer.muted = False
        await wait_for(transport.ready, 5, what="logged in again")
        assert peer.connections >= 2
        assert (await transport.send(sms())).outcome == "sent"
        await transport.close()


async def test_peer_speaks_ami_bytes() -> None:
    """The fake itself, byte for byte: what a real Asterisk 11 would write."""
    async with AmiPeer(USER, SECRET, status_delay=0) as peer:
        reader, writer = await asyncio.open_connection("127.0.0.1", peer.port)
        try:
            assert await reader.readexactly(len(GREETING)) == GREETING

            async def exchange(action: bytes) -> bytes:
                writer.write(action)
                return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)

            assert await exchange(b"Action: Ping\r\nActionID: 1\r\n\r\n") == (
                b"Response: Error\r\nActionID: 1\r\nMessage: Permission denied\r\n\r\n"
            )
            assert await exchange(
                b"Action: Login\r\nActionID: 2\r\nUsername: amivono\r\nSecret: ami-secret\r\n"
                b"Events: call\r\n\r\n"
            ) == b"Response: Success\r\nActionID: 2\r\nMessage: Authentication accepted\r\n\r\n"
            pong = await exchange(b"Action: Ping\r\nActionID: 3\r\n\r\n")
            assert pong.startswith(b"Response: Success\r\nActionID: 3\r\nPing: Pong\r\nTimestamp: ")
            assert await exchange(b"Action: Nope\r\nActionID: 4\r\n\r\n") == (
                b"Response: Error\r\nActionID: 4\r\nMessage: Invalid/unknown command\r\n\r\n"
            )
            queued = await exchange(
                b"Action: DongleSendSMS\r\nActionID: 5\r\nDevice: dongle0\r\n"
                b"Number: +46736265449\r\nMessage: hi\r\n\r\n"
            )
            assert queued.startswith(
                b"Response: Success\r\nActionID: 5\r\nMessage: [dongle0] SMS queued for send\r\n"
                b"ID: 0x"
            )
            sms_id = queued.split(b"ID: ")[-1].split(b"\r\n")[0]
            event = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
            assert event == (
                b"Event: DongleSMSStatus\r\nPrivilege: call,all\r\nDevice: dongle0\r\n"
                b"ID: " + sms_id + b"\r\nStatus: Sent\r\n\r\n"
            )
            # Asterisk ends a line at a bare LF too: this is two headers, not one.
            assert await exchange(b"Action: Logoff\nActionID: 6\r\n\r\n") == (
                b"Response: Goodbye\r\nActionID: 6\r\nMessage: Thanks for all the fish.\r\n\r\n"
            )
            assert await asyncio.wait_for(reader.read(), 2) == b""
            assert peer.actions[-1] == [("Action", "Logoff"), ("ActionID", "6")]
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def test_peer_refuses_a_wrong_login_and_hangs_up(peer: AmiPeer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", peer.port)
    try:
        await reader.readexactly(len(GREETING))
        writer.write(b"Action: Login\r\nActionID: 9\r\nUsername: amivono\r\nSecret: no\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 2) == (
            b"Response: Error\r\nActionID: 9\r\nMessage: Authentication failed\r\n\r\n"
        )
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
