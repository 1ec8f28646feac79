"""SMS through a GSM modem: chan_dongle's `DongleSendSMS` over AMI (panoramisk).

chan_dongle answers the action at once ("SMS queued for send", with an ID) and
reports the outcome later as a `DongleSMSStatus` event carrying the same ID, so
a send is: action, response, then the matching event (or a timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
from collections import OrderedDict
from typing import Any

from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from service.delivery.sms_transports import OutgoingSms, SendResult, checked_number

log = logging.getLogger(__name__)

_DEVICE = re.compile(r"[A-Za-z0-9_-]{1,32}", re.ASCII)
_LINE_BREAK = re.compile(r"[\r\n]")

# Status events nobody waits for yet, kept only for the moment between a
# response and our coroutine registering its waiter; bounded, as events for
# other clients' SMS land here too.
_UNCLAIMED_MAX = 256

# Wire order across all connections: tells whether an event followed a response.
_wire_order = itertools.count(1)


def ami_value(value: object) -> str:
    """panoramisk writes `Key: value` verbatim and Asterisk ends a header at LF
    (with or without CR), so a line break in a value would inject headers or
    whole actions (e.g. Originate). A space keeps the text readable."""
    return _LINE_BREAK.sub(" ", str(value))


class _Protocol(AMIProtocol):
    def handle_message(self, message: Message) -> None:
        message.wire_seq = next(_wire_order)
        super().handle_message(message)


class _Manager(Manager):
    """panoramisk's Manager without its own reconnect and unchecked pings.

    Its reconnect is a fixed-interval `call_later` that `close()` cannot cancel,
    a refused login is only a False flag, and its ping never looks at the
    answer, so a hung peer goes unnoticed. `DongleAmiTransport.run` does both."""

    pinger: asyncio.TimerHandle | None  # set by the base class

    def __init__(self, on_lost: Any, **config: Any) -> None:
        super().__init__(**config)
        self._on_lost = on_lost

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        if f.cancelled() or f.exception() is not None:
            return  # the base class would schedule its own retry
        super().connection_made(f)

    def connection_lost(self, exc: object) -> None:
        self._connected = False
        self.authenticated = False
        if self.pinger:
            self.pinger.cancel()
            self.pinger = None
        self._on_lost()

    def ping(self) -> None:
        return None


class _Session:
    def __init__(self, manager: _Manager, lost: asyncio.Event) -> None:
        self.manager = manager
        self.lost = lost
        self.logged_in = False


class DongleAmiTransport:
    """`DongleSendSMS` to a chan_dongle device through the Asterisk Manager Interface."""

    name = "dongle-ami"

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        device: str,
        *,
        status_timeout: float = 30.0,
        response_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        ping_interval: float = 10.0,
        reconnect_min: float = 0.5,
        reconnect_max: float = 30.0,
    ) -> None:
        if not _DEVICE.fullmatch(device):
            raise ValueError(f"invalid chan_dongle device name: {device!r}")
        self._host = host
        self._port = port
        self._username = username
        self._secret = secret
        self._device = device
        self._status_timeout = status_timeout
        self._response_timeout = response_timeout
        self._connect_timeout = connect_timeout
        self._ping_interval = ping_interval
        self._reconnect_min = reconnect_min
        self._reconnect_max = reconnect_max
        self._session: _Session | None = None
        self._closed = asyncio.Event()
        self._failing = False  # AMI unreachable: logged once until it is back
        self._waiters: dict[str, asyncio.Future[str]] = {}
        self._unclaimed: OrderedDict[str, tuple[int, str]] = OrderedDict()

    # -- connection -------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        delay = self._reconnect_min
        while not (stop.is_set() or self._closed.is_set()):
            try:
                logged_in = await self._connect_once(stop)
            except Exception:  # a bug here must not end the reconnect loop
                log.exception("AMI session with %s:%s failed", self._host, self._port)
                logged_in = False
            if stop.is_set() or self._closed.is_set():
                break
            if logged_in:
                delay = self._reconnect_min
                self._failing = False
            if not self._failing:  # once per outage, not at every try
                log.warning("AMI %s:%s: reconnecting (every %.1f s up to %.1f s)",
                            self._host, self._port, delay, self._reconnect_max)
            self._failing = not logged_in
            await _first(stop, self._closed, timeout=delay)
            delay = min(delay * 2, self._reconnect_max)

    async def _connect_once(self, stop: asyncio.Event) -> bool:
        """One connection from connect to loss or stop; True if it logged in."""
        lost = asyncio.Event()
        manager = _Manager(
            lost.set,
            host=self._host,
            port=self._port,
            loop=asyncio.get_running_loop(),
            protocol_factory=_Protocol,
            # Never re-send an SMS on a new connection: it may already be queued.
            forgetable_actions=("ping", "login", "logoff", "donglesendsms"),
        )
        manager.register_event("DongleSMSStatus", self._on_sms_status)
        session = _Session(manager, lost)
        stopping = (stop, self._closed)  # a hung Asterisk must not hold up a stop
        connecting = manager.connect()
        try:
            try:
                await _wait(connecting, self._connect_timeout, *stopping)
            except (OSError, TimeoutError, ConnectionError) as exc:
                connecting.cancel()
                if not (stop.is_set() or self._closed.is_set() or self._failing):
                    log.warning("AMI %s:%s: cannot connect: %s", self._host, self._port, exc)
                return False
            if manager.protocol is None:
                return False
            self._session = session
            # Our own Login (not panoramisk's): it gets a timeout and a clear refusal.
            resp = await self._request(
                session,
                {
                    "Action": "Login",
                    "Username": self._username,
                    "Secret": self._secret,
                    "Events": "call",  # chan_dongle sends DongleSMSStatus as class "call"
                },
                aborts=stopping,
            )
            if resp.response != "Success":
                log.error(
                    "AMI %s:%s: login as %r refused: %s",
                    self._host, self._port, self._username, resp.message or resp.response,
                )
                return False
            session.logged_in = True
            log.info("AMI %s:%s: logged in as %r", self._host, self._port, self._username)
            await self._keepalive(session, stop)
            return True
        except (ConnectionError, TimeoutError) as exc:
            log.warning("AMI %s:%s: %s", self._host, self._port, exc)
            return session.logged_in
        finally:
            if stop.is_set() and session.logged_in and not lost.is_set():
                with contextlib.suppress(ConnectionError, TimeoutError):
                    await self._request(session, {"Action": "Logoff"}, timeout=1.0)
            session.logged_in = False
            lost.set()  # fails the sends still waiting on this connection
            manager.close()
            if self._session is session:
                self._session = None

    async def _keepalive(self, session: _Session, stop: asyncio.Event) -> None:
        # A Ping that goes unanswered means a dead peer even if TCP looks open.
        while True:
            await _first(stop, self._closed, session.lost, timeout=self._ping_interval)
            if stop.is_set() or self._closed.is_set():
                return
            if session.lost.is_set():
                raise ConnectionError("connection lost")
            await self._request(session, {"Action": "Ping"}, aborts=(stop, self._closed))

    async def _request(
        self,
        session: _Session,
        action: dict[str, str],
        timeout: float | None = None,
        aborts: tuple[asyncio.Event, ...] = (),
    ) -> Message:
        """Send one action and wait for its response. ConnectionError if the
        connection goes (or an abort event is set) first, TimeoutError if no
        response comes in time."""
        if session.lost.is_set():
            raise ConnectionError("not connected to AMI")
        clean = {key: ami_value(value) for key, value in action.items()}
        future = session.manager.send_action(clean, as_list=False)
        resp = await _wait(future, timeout or self._response_timeout, session.lost, *aborts)
        # as_list=False makes panoramisk resolve with one Message, never a list.
        return resp[0] if isinstance(resp, list) else resp

    def ready(self) -> bool:
        session = self._session
        return session is not None and session.logged_in and not session.lost.is_set()

    # -- sending ----------------------------------------------------------

    async def send(self, sms: OutgoingSms) -> SendResult:
        try:
            to = checked_number(sms.to_number)
        except ValueError as exc:
            return SendResult("failed", str(exc))
        session = self._session
        if session is None or not self.ready():
            return SendResult(
                "failed", f"not logged in to AMI at {self._host}:{self._port}; SMS not handed over"
            )
        action = {
            "Action": "DongleSendSMS",
            "Device": self._device,
            "Number": to,
            "Message": sms.body,
        }
        try:
            resp = await self._request(session, action)
        except ConnectionError:
            return SendResult(
                "failed", "AMI connection lost before DongleSendSMS was answered; it may be queued"
            )
        except TimeoutError:
            return SendResult(
                "failed",
                f"no answer to DongleSendSMS within {self._response_timeout:g} s; it may be queued",
            )
        if resp.response != "Success":
            return SendResult("failed", resp.message or f"DongleSendSMS: {resp.response}")
        sms_id = resp.get("ID", "")
        if not sms_id or sms_id == "(nil)":
            return SendResult("failed", f"DongleSendSMS answered without an ID: {resp.message}")
        status = await self._status(session, sms_id, getattr(resp, "wire_seq", 0))
        where = f"{self._device} SMS {sms_id} to {to}"
        if status is None:
            if session.lost.is_set():
                return SendResult(
                    "failed", f"AMI connection lost before DongleSMSStatus; {where} may be sent"
                )
            return SendResult(
                "failed", f"no DongleSMSStatus within {self._status_timeout:g} s for {where}"
            )
        if status == "Sent":
            return SendResult("sent", f"{where}: Sent")
        return SendResult("failed", f"{where}: {status or 'no status'}")

    async def _status(self, session: _Session, sms_id: str, resp_seq: int) -> str | None:
        """The Status of the DongleSMSStatus for `sms_id`, or None (timeout, lost)."""
        # chan_dongle's ID is a task's address (%p): a freed task's address is
        # soon reused, so only an event after our response on the wire is ours.
        early = self._unclaimed.pop(sms_id, None)
        if early is not None and early[0] > resp_seq:
            return early[1]
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters[sms_id] = waiter
        try:
            status: str = await _wait(waiter, self._status_timeout, session.lost)
            return status
        except (ConnectionError, TimeoutError):
            return None
        finally:
            if self._waiters.get(sms_id) is waiter:
                del self._waiters[sms_id]

    def _on_sms_status(self, manager: Manager, event: Message) -> None:
        if event.get("Device") != self._device:
            return
        sms_id = event.get("ID", "")
        status = event.get("Status", "")
        waiter = self._waiters.get(sms_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(status)
            return
        # Possibly ours with the response in the same read, not yet processed.
        self._unclaimed[sms_id] = (getattr(event, "wire_seq", 0), status)
        self._unclaimed.move_to_end(sms_id)
        while len(self._unclaimed) > _UNCLAIMED_MAX:
            self._unclaimed.popitem(last=False)

    async def close(self) -> None:
        self._closed.set()
        session = self._session
        if session is not None:
            session.logged_in = False
            session.lost.set()
            session.manager.close()


async def _first(*events: asyncio.Event, timeout: float | None) -> None:
    """Return when any of `events` is set or after `timeout`."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


async def _wait(future: asyncio.Future[Any], timeout: float, *aborts: asyncio.Event) -> Any:
    """`future`'s result; ConnectionError if one of `aborts` is set first,
    TimeoutError after `timeout`. The future is left alone (panoramisk owns it)."""
    abort_waits = [asyncio.ensure_future(event.wait()) for event in aborts]
    try:
        await asyncio.wait(
            {future, *abort_waits}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for w in abort_waits:
            w.cancel()
    if future.done():
        return future.result()
    if any(event.is_set() for event in aborts):
        raise ConnectionError("AMI connection lost or closing")
    raise TimeoutError(f"no answer within {timeout:g} s")
