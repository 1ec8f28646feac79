"""How an SMS leaves the gateway. The dispatcher knows only this interface;
each transport turns a validated message into its own protocol's request."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

# Defence in depth: numbers were validated by the API, but nothing else may
# ever reach a SIP URI, whatever path a row took into the database.
from service.domain.phone_numbers import E164_SHAPE as _E164
from service.telephony.ari import AriClient, AriError


@dataclass(frozen=True)
class OutgoingSms:
    message_id: int
    attempt_id: int
    from_number: str
    to_number: str
    body: str


@dataclass(frozen=True)
class SendResult:
    outcome: str  # 'sent' or 'failed'
    detail: str


class SmsTransport(Protocol):
    name: str

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the connection to the telephony side up until `stop`."""

    def ready(self) -> bool:
        """False while disconnected: the dispatcher then claims nothing, so an
        Asterisk restart delays sends instead of failing them."""

    async def send(self, sms: OutgoingSms) -> SendResult: ...

    async def close(self) -> None: ...


def checked_number(number: str) -> str:
    if not _E164.fullmatch(number):
        raise ValueError(f"refusing a number that is not E.164: {number!r}")
    return number


class AriPjsipTransport:
    """SIP MESSAGE to the trunk through ARI `PUT /endpoints/sendMessage`."""

    name = "ari-pjsip"

    def __init__(
        self, ari: AriClient, trunk_endpoint: str, trunk_host: str, trunk_port: int
    ) -> None:
        self._ari = ari
        self._trunk = trunk_endpoint
        self._host = trunk_host
        self._port = trunk_port

    async def run(self, stop: asyncio.Event) -> None:
        # The dispatcher keeps the ARI event WebSocket up (it reconnects with
        # backoff); whether it is connected is how we know Asterisk is there.
        await stop.wait()

    def ready(self) -> bool:
        return self._ari.connected.is_set()

    async def send(self, sms: OutgoingSms) -> SendResult:
        try:
            to = checked_number(sms.to_number)
            from_ = checked_number(sms.from_number)
        except ValueError as exc:
            return SendResult("failed", str(exc))
        uri = f"pjsip:{self._trunk}/sip:{to}@{self._host}:{self._port}"
        try:
            # One readable line on the gateway console (`asterisk -rvvv`):
            # "Setting global variable 'AMIVONO_SMS' to 'message 7 ...'".
            await self._ari.set_global(
                "AMIVONO_SMS",
                f"message {sms.message_id} attempt {sms.attempt_id}: SMS to {to} via {self._trunk}",
            )
        except AriError as exc:
            return SendResult("failed", str(exc))
        try:
            await self._ari.send_message(
                uri,
                f"sip:{from_}@{self._host}",
                sms.body,
                # The carrier's delivery report names the attempt by X-Amivono-Ref.
                {"X-Amivono-Message-Id": str(sms.message_id),
                 "X-Amivono-Ref": str(sms.attempt_id)},
            )
        except AriError as exc:
            if exc.status is None:  # no answer: Asterisk may have taken it all the same
                return SendResult("failed", f"{exc}; the SMS may have been sent")
            return SendResult("failed", str(exc))
        return SendResult("sent", f"handed to Asterisk for {uri}")

    async def close(self) -> None:
        return None  # the ARI client belongs to the dispatcher
