"""A phone behind the carrier simulator sends an SMS to the gateway: the
carrier Asterisk sends a SIP MESSAGE over the trunk (through its own ARI,
`PUT /endpoints/sendMessage`), authenticating to the gateway with the trunk
credentials as a real carrier would."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import httpx

from sandbox.settings import SandboxSettings

# A phone number as it goes into a SIP URI's user part: E.164 or a short code.
_NUMBER = re.compile(r"\+?[0-9]{1,20}")


class CarrierSendError(RuntimeError):
    pass


def carrier_ari_url(settings: SandboxSettings) -> str:
    """The carrier simulator's ARI, at the carrier's address as the gateway
    side sees it (loopback in the sandbox, the service name in compose)."""
    return f"http://{settings.trunk_host}:{settings.carrier_http_port}/ari"


def send_sms(
    settings: SandboxSettings,
    sender: str,
    recipient: str,
    text: str,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Have the carrier send `text` from the phone `sender` to `recipient` at
    the gateway; `headers` become extra SIP headers of the MESSAGE.

    Returns what was sent. The carrier's ARI answers 202 once it has taken the
    MESSAGE, before the gateway answers: `sent` means "handed to the trunk",
    not that the gateway accepted it."""
    for number in (sender, recipient):
        if not _NUMBER.fullmatch(number):
            raise CarrierSendError(f"not a phone number: {number!r}")
    params = {
        "to": f"pjsip:gateway/sip:{recipient}@{settings.gateway_host}:{settings.sip_port}",
        "from": f"sip:{sender}@{settings.trunk_host}",
        "body": text,
    }
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    try:
        response = httpx.put(
            f"{carrier_ari_url(settings)}/endpoints/sendMessage",
            params=params,
            json={"variables": headers or {}},
            auth=(settings.ari_user, settings.ari_password),
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise CarrierSendError(f"carrier ARI unreachable: {exc}") from exc
    if response.status_code != 202:
        raise CarrierSendError(
            f"carrier ARI answered {response.status_code}: {response.text.strip()}"
        )
    return {"time": when, "from": sender, "to": recipient, "body": text, "sent": True}
