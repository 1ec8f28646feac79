"""The carrier simulator enforces the trunk's digest auth, as a real carrier
does: an SMS over SIP without the trunk's credentials, or with a wrong
password, is refused and never reaches a phone; with them it is delivered."""

from __future__ import annotations

import secrets

from sandbox.carrier_logs import received_sms
from sandbox.settings import SandboxSettings

from .conftest import wait_for
from .sip_message import SipMessage

SETTINGS = SandboxSettings.from_env()
CARRIER_SIP = ("127.0.0.1", SETTINGS.trunk_port)
PHONE = "+46736265449"


def bodies(carrier) -> set[str]:
    return {m["body"] for m in received_sms(carrier)}


async def test_the_carrier_refuses_sms_without_the_trunk_credentials(carrier):
    tag = secrets.token_hex(4)

    def message(body: str, host: str = "127.0.0.1") -> SipMessage:
        # From the gateway's own address (the carrier identifies the trunk by
        # it) unless told otherwise.
        return SipMessage(CARRIER_SIP, "+46736265400", PHONE, f"{body} {tag}", local_host=host)

    refused = {
        "no credentials": message("no credentials").send(),
        "wrong password": message("wrong password").send(SETTINGS.trunk_user, "not-the-secret"),
        "wrong user": message("wrong user").send("intruder", SETTINGS.trunk_password),
        "another address": message("another address", "127.0.0.2").send(),
    }
    assert all(status in (401, 403) for status in refused.values()), refused
    # The control: the same request with the trunk's credentials gets through,
    # so the ones above were refused for their credentials alone.
    assert message("trunk").send(SETTINGS.trunk_user, SETTINGS.trunk_password) == 202
    await wait_for(lambda: f"trunk {tag}" in bodies(carrier), 5, what="the trunk's SMS")
    # Its line is in the log, written after the refused ones were answered: none of them is.
    assert not {f"{what} {tag}" for what in refused} & bodies(carrier)
