"""AMI framing in service/delivery/dongle_transport.py, without a socket:
`ami_value` neutralises line breaks, every value of every action goes through
it, and DongleSMSStatus events are matched to the send they answer.

The transport is driven through `send` with a fake panoramisk manager in
place of a connection (tests/test_dongle_transport.py has the wire tests)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from panoramisk.message import Message

from service.delivery import dongle_transport
from service.delivery.dongle_transport import DongleAmiTransport, ami_value
from service.delivery.sms_transports import OutgoingSms

DEVICE = "dongle0"
TO = "+46736265449"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("hello", "hello"),
        ("a\r\nAction: Originate", "a  Action: Originate"),
        ("a\nb", "a b"),
        ("a\rb", "a b"),
        ("\n\n", "  "),
        ("line\r\n\r\n", "line    "),  # a blank line would end the action
        (42, "42"),
        (None, "None"),
    ],
)
def test_ami_value_replaces_each_line_break_with_a_space(raw: object, clean: str) -> None:
    assert ami_value(raw) == clean


@pytest.mark.parametrize("text", ["x\r\nAction: Originate\r\nChannel: PJSIP/evil\r\n\r\n",
                                  "\n" * 100, "é\r€\n😀"])
def test_ami_value_never_holds_cr_or_lf(text: str) -> None:
    clean = ami_value(text)
    assert "\r" not in clean and "\n" not in clean
    assert len(clean) == len(text)  # nothing else is changed or dropped


def test_other_characters_pass_unchanged() -> None:
    text = "Hej! {ok} [x] ~ | € 😀 \t : ; ,"
    assert ami_value(text) == text


@pytest.mark.parametrize("device", ["", "dongle0\r\nAction: Originate", "dongle 0",
                                    "dongle0;x", "x" * 33, "dongle/0"])
def test_device_names_are_checked_at_construction(device: str) -> None:
    with pytest.raises(ValueError, match="device"):
        DongleAmiTransport("127.0.0.1", 5038, "u", "s", device)


# --- sends through a fake manager ------------------------------------------------


class FakeManager:
    """Stands in for panoramisk's Manager: records actions, answers each with
    `reply(action)`, and lets the test push events as if read from the wire."""

    def __init__(self, reply: Any) -> None:
        self.actions: list[dict[str, str]] = []
        self.reply = reply

    def send_action(self, action: dict[str, str], as_list: bool = False) -> asyncio.Future[Any]:
        self.actions.append(dict(action))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(self.reply(action))
        return future

    def close(self) -> None:
        pass


def message(seq: int, **headers: str) -> Message:
    m = Message(headers)
    m.wire_seq = seq
    return m


def response(seq: int = 10, sms_id: str = "0x1") -> Message:
    return message(seq, Response="Success", Message="[dongle0] SMS queued for send", ID=sms_id)


def status_event(seq: int, sms_id: str = "0x1", status: str = "Sent",
                 device: str = DEVICE) -> Message:
    return message(seq, Event="DongleSMSStatus", Device=device, ID=sms_id, Status=status)


def connected(reply: Any, **kwargs: Any) -> tuple[DongleAmiTransport, FakeManager]:
    kwargs.setdefault("status_timeout", 0.05)
    kwargs.setdefault("response_timeout", 0.05)
    transport = DongleAmiTransport("127.0.0.1", 5038, "u", "s", DEVICE, **kwargs)
    manager = FakeManager(reply)
    session = dongle_transport._Session(manager, asyncio.Event())  # type: ignore[arg-type]
    session.logged_in = True
    transport._session = session
    return transport, manager


def sms(body: str = "hello", to: str = TO) -> OutgoingSms:
    return OutgoingSms(1, 1, "+46700000000", to, body)


def deliver_later(transport: DongleAmiTransport, event: Message) -> None:
    asyncio.get_running_loop().call_soon(transport._on_sms_status, None, event)


async def test_every_value_of_the_action_is_neutralised() -> None:
    transport, manager = connected(lambda action: response())
    deliver_later(transport, status_event(11))
    body = "hi\r\nAction: Originate\r\nChannel: Local/1@default\r\n\r\nAction: Logoff"
    result = await transport.send(sms(body))
    assert result.outcome == "sent", result
    [action] = manager.actions
    assert action["Action"] == "DongleSendSMS"
    assert action["Device"] == DEVICE and action["Number"] == TO
    assert action["Message"] == ami_value(body)
    for key, value in action.items():
        assert "\r" not in value and "\n" not in value, key


async def test_the_login_secret_is_neutralised_too() -> None:
    transport, manager = connected(lambda action: message(1, Response="Success"))
    session = transport._session
    assert session is not None
    await transport._request(session, {"Action": "Login", "Username": "u\nx",
                                       "Secret": "s\r\nAction: Originate"})
    [action] = manager.actions
    assert action == {"Action": "Login", "Username": "u x", "Secret": "s  Action: Originate"}


@pytest.mark.parametrize("to", ["500&PJSIP/other", "+46@x", TO + "\r\nAction: Originate"])
async def test_a_number_that_is_not_e164_is_never_sent(to: str) -> None:
    transport, manager = connected(lambda action: response())
    result = await transport.send(sms(to=to))
    assert result.outcome == "failed" and "E.164" in result.detail
    assert manager.actions == []


@pytest.mark.parametrize(("status", "outcome"),
                         [("Sent", "sent"), ("NotSent", "failed"), ("", "failed")])
async def test_the_status_event_decides_the_outcome(status: str, outcome: str) -> None:
    transport, _ = connected(lambda action: response())
    deliver_later(transport, status_event(11, status=status))
    result = await transport.send(sms())
    assert result.outcome == outcome, result
    assert f"{DEVICE} SMS 0x1 to {TO}" in result.detail


async def test_events_for_another_device_or_id_are_not_ours() -> None:
    transport, _ = connected(lambda action: response(), status_timeout=0.01)
    deliver_later(transport, status_event(11, device="dongle1"))
    deliver_later(transport, status_event(12, sms_id="0x2"))
    result = await transport.send(sms())
    assert result.outcome == "failed" and "no DongleSMSStatus" in result.detail


async def test_an_event_read_with_the_response_still_counts() -> None:
    # The event came after the response on the wire but was handled before
    # the sender registered its waiter: it waits among the unclaimed.
    transport, _ = connected(lambda action: response(seq=10))
    transport._on_sms_status(None, status_event(11))  # type: ignore[arg-type]
    assert (await transport.send(sms())).outcome == "sent"


async def test_a_stale_event_with_a_reused_id_is_ignored() -> None:
    # chan_dongle's ID is an address, soon reused: an event from before our
    # response on the wire answers an earlier SMS, not ours.
    transport, _ = connected(lambda action: response(seq=10), status_timeout=0.01)
    transport._on_sms_status(None, status_event(9, status="Sent"))  # type: ignore[arg-type]
    result = await transport.send(sms())
    assert result.outcome == "failed" and "no DongleSMSStatus" in result.detail


async def test_unclaimed_events_are_bounded() -> None:
    transport, _ = connected(lambda action: response())
    for i in range(dongle_transport._UNCLAIMED_MAX + 50):
        transport._on_sms_status(None, status_event(i, sms_id=f"0x{i:x}"))  # type: ignore[arg-type]
    assert len(transport._unclaimed) == dongle_transport._UNCLAIMED_MAX
    assert "0x0" not in transport._unclaimed  # the oldest go first


async def test_a_refused_send_or_missing_id_fails() -> None:
    transport, _ = connected(lambda action: message(10, Response="Error",
                                                    Message="Device not found"))
    assert await transport.send(sms()) == dongle_transport.SendResult(
        "failed", "Device not found")
    transport, _ = connected(lambda action: response(sms_id="(nil)"))
    result = await transport.send(sms())
    assert result.outcome == "failed" and "without an ID" in result.detail


async def test_not_logged_in_sends_nothing() -> None:
    transport, manager = connected(lambda action: response())
    assert transport._session is not None
    transport._session.logged_in = False
    result = await transport.send(sms())
    assert result.outcome == "failed" and "not logged in" in result.detail
    assert manager.actions == []
