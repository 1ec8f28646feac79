"""How an SMS leaves the gateway. The dispatcher knows only this interface;
each transport turns a validated message into its own protocol's request."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

# Defence in depth: numbers were validated by the API, but nothing else may
# ever reach a SIP URI, whatever path a row took into the database.
from service import metrics
from service.delivery.gateway_pool import GatewayPool, Node
from service.domain.phone_numbers import E164_SHAPE as _E164
from service.telephony.ari import AriError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutgoingSms:
    message_id: int
    attempt_id: int
    from_number: str
    to_number: str
    body: str


@dataclass(frozen=True)
class SendResult:
    outcome: str  # 'sent', 'failed', or 'unknown' (may have gone out)
    detail: str
    gateway: str | None = None  # the gateway node that carried it (ARI transport)


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
    """SIP MESSAGE to the trunk through ARI `PUT /endpoints/sendMessage`, on
    one of the gateway nodes (gateway_pool.py says which)."""

    name = "ari-pjsip"

    def __init__(self, gateways: GatewayPool, trunk_host: str, trunk_port: int) -> None:
        self._gateways = gateways
        self._host = trunk_host
        self._port = trunk_port

    async def run(self, stop: asyncio.Event) -> None:
        # The dispatcher keeps each node's ARI event WebSocket up (it
        # reconnects with backoff); whether one is connected is how we know
        # an Asterisk is there.
        await stop.wait()

    def ready(self) -> bool:
        return self._gateways.ready()

    async def send(self, sms: OutgoingSms) -> SendResult:
        try:
            to = checked_number(sms.to_number)
            from_ = checked_number(sms.from_number)
        except ValueError as exc:
            return SendResult("failed", str(exc))
        tried: set[str] = set()
        failures: list[str] = []
        while True:
            node = await self._gateways.sms_slot(exclude=tried)
            if node is None:
                detail = "; ".join(failures) or "no gateway connected"
                return SendResult("failed", f"not handed over: {detail}")
            tried.add(node.name)
            node.sms_in_flight += 1
            try:
                result = await self._send_on(node, sms, to, from_)
            finally:
                node.sms_in_flight -= 1
            if isinstance(result, SendResult):
                node.note_send()
                if result.outcome == "sent":
                    node.note_handed(sms.attempt_id)
                return result
            # Not handed over: the node went away before it took the SMS.
            node.note_error(result)
            failures.append(f"{node.name}: {result}")
            metrics.GATEWAY_REROUTES.labels(node.name).inc()
            log.warning("sms %s attempt %s: gateway %s did not take it (%s): trying another",
                        sms.message_id, sms.attempt_id, node.name, result)

    async def _send_on(self, node: Node, sms: OutgoingSms, to: str,
                       from_: str) -> SendResult | str:
        """The result, or why the SMS certainly did not leave (another node may send it)."""
        trunk = node.config.trunk
        uri = f"pjsip:{trunk}/sip:{to}@{self._host}:{self._port}"
        # One readable line on the gateway console (`asterisk -rvvv`):
        # "Setting global variable 'AMIVONO_SMS' to 'message 7 ...'", shown
        # beside the send, not before it: under load the lines of several
        # sends share one ARI request (AriClient.console_line).
        node.ari.console_line(
            "AMIVONO_SMS",
            f"message {sms.message_id} attempt {sms.attempt_id}: SMS to {to} via {trunk}")
        try:
            await node.ari.send_message(
                uri,
                f"sip:{from_}@{self._host}",
                sms.body,
                # The carrier's delivery report names the attempt by X-Amivono-Ref.
                {"X-Amivono-Message-Id": str(sms.message_id),
                 "X-Amivono-Ref": str(sms.attempt_id)},
            )
        except AriError as exc:
            if exc.not_sent:
                return str(exc)
            if exc.status is None:  # no answer: Asterisk may have taken it all the same
                return SendResult("unknown", f"{exc}; the SMS may have been sent",
                                  node.name)
            return SendResult("failed", str(exc), node.name)
        return SendResult("sent", f"handed to Asterisk for {uri}", node.name)

    async def close(self) -> None:
        return None  # the ARI clients belong to the dispatcher's gateway pool
