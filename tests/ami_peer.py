"""A fake Asterisk Manager Interface with chan_dongle's SMS actions, speaking
the wire protocol as Asterisk 11 does, byte for byte.

It parses as Asterisk's manager.c does: a line ends at LF, one CR before it is
dropped, `Key: value` splits at the first colon with the blanks after it
skipped, and an empty line ends the action. Every action is recorded as those
(key, value) pairs in wire order, so tests can see exactly what was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field

GREETING = b"Asterisk Call Manager/11.0.0\r\n"

Headers = list[tuple[str, str]]


@dataclass
class _Client:
    writer: asyncio.StreamWriter
    authenticated: bool = False
    event_classes: set[str] = field(default_factory=set)

    def wants(self, event_class: str) -> bool:
        return self.authenticated and (
            "all" in self.event_classes or event_class in self.event_classes
        )


def response(action_id: str, status: str, *lines: str) -> bytes:
    """A response as astman_send_response writes it: ActionID only if the action had one."""
    id_line = f"ActionID: {action_id}\r\n" if action_id else ""
    body = "".join(f"{line}\r\n" for line in lines)
    return f"Response: {status}\r\n{id_line}{body}\r\n".encode()


def header(headers: Headers, key: str) -> str:
    """First value of `key`, case-insensitive, as astman_get_header; '' if absent."""
    for k, v in headers:
        if k.lower() == key.lower():
            return v
    return ""


class AmiPeer:
    def __init__(
        self,
        username: str,
        secret: str,
        *,
        device: str = "dongle0",
        status_delay: float = 0.05,
        failing_numbers: tuple[str, ...] = (),
        silent_numbers: tuple[str, ...] = (),
        stale_status_first: bool = False,
        login_failure_delay: float = 0.0,
    ) -> None:
        """status_delay: seconds between the DongleSendSMS response and its
        DongleSMSStatus; 0 writes both in one write (one TCP segment).
        failing_numbers get Status NotSent, silent_numbers no status at all.
        stale_status_first: before each response, an event with the same ID
        (NotSent) as a freed chan_dongle task whose address was reused would give.
        login_failure_delay: Asterisk sleeps 1 s before refusing a login."""
        self.username = username
        self.secret = secret
        self.device = device
        self.status_delay = status_delay
        self.failing_numbers = set(failing_numbers)
        self.silent_numbers = set(silent_numbers)
        self.stale_status_first = stale_status_first
        self.login_failure_delay = login_failure_delay
        self.actions: list[Headers] = []
        self.issued_ids: list[str] = []
        self.muted = False  # True: record actions but answer nothing (a hung Asterisk)
        self.connections = 0
        self._ids = itertools.count(0x55D0C3A1F2A0, 0x1A0)  # like chan_dongle's %p
        self._server: asyncio.Server | None = None
        self._clients: dict[asyncio.StreamWriter, _Client] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    def named(self, action: str) -> list[Headers]:
        return [h for h in self.actions if header(h, "Action").lower() == action.lower()]

    async def start(self) -> AmiPeer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def drop_clients(self) -> None:
        """Close every client connection (the server keeps listening)."""
        writers = list(self._clients)
        for w in writers:
            w.close()
        for w in writers:
            with contextlib.suppress(OSError):
                await w.wait_closed()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.drop_clients()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> AmiPeer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _track(self, task: asyncio.Task[None] | None) -> None:
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._track(asyncio.current_task())
        self.connections += 1
        client = _Client(writer)
        self._clients[writer] = client
        try:
            writer.write(GREETING)
            headers: Headers = []
            while True:
                raw = await reader.readline()
                if not raw:
                    break
                line = raw.decode("utf-8", "replace")
                if line.endswith("\n"):
                    line = line[:-1]
                if line.endswith("\r"):
                    line = line[:-1]
                if line:
                    key, colon, value = line.partition(":")
                    headers.append((key, value.lstrip(" \t") if colon else ""))
                    continue
                if not headers:
                    continue
                self.actions.append(headers)
                keep_open = self.muted or await self._handle(client, headers)
                headers = []
                await writer.drain()
                if not keep_open:
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._clients.pop(writer, None)
            writer.close()

    async def _handle(self, client: _Client, headers: Headers) -> bool:
        """Answer one action; False closes the connection, as Asterisk does."""
        w = client.writer
        action = header(headers, "Action").lower()
        aid = header(headers, "ActionID")

        if action == "login":
            if header(headers, "Username") == self.username and header(
                headers, "Secret"
            ) == self.secret:
                client.authenticated = True
                events = header(headers, "Events").lower()
                if events in ("", "on"):
                    client.event_classes = {"all"}
                elif events != "off":
                    client.event_classes = {e.strip() for e in events.split(",")}
                w.write(response(aid, "Success", "Message: Authentication accepted"))
                if client.wants("system"):
                    w.write(
                        b"Event: FullyBooted\r\nPrivilege: system,all\r\n"
                        b"Status: Fully Booted\r\n\r\n"
                    )
                return True
            await asyncio.sleep(self.login_failure_delay)
            w.write(response(aid, "Error", "Message: Authentication failed"))
            return False
        if action == "logoff":
            w.write(response(aid, "Goodbye", "Message: Thanks for all the fish."))
            return False
        if not client.authenticated and action != "challenge":
            w.write(response(aid, "Error", "Message: Permission denied"))
            return True
        if action == "ping":
            w.write(response(aid, "Success", "Ping: Pong", f"Timestamp: {time.time():.6f}"))
            return True
        if action == "donglesendsms":
            self._dongle_send_sms(w, headers, aid)
            return True
        w.write(response(aid, "Error", "Message: Invalid/unknown command"))
        return True

    def _dongle_send_sms(self, w: asyncio.StreamWriter, headers: Headers, aid: str) -> None:
        device = header(headers, "Device")
        number = header(headers, "Number")
        for key, value in (("Device", device), ("Number", number)):
            if not value:
                w.write(response(aid, "Error", f"Message: {key} not specified"))
                return
        if not header(headers, "Message"):
            w.write(response(aid, "Error", "Message: Message not specified"))
            return
        # chan_dongle puts "\r\nID: %p" into the Message, so errors carry ID: (nil).
        if device != self.device:
            w.write(response(aid, "Error", f"Message: [{device}] Device not found", "ID: (nil)"))
            return
        digits = number[1:] if number.startswith("+") else number
        if not all(c in "0123456789*#abcABC" for c in digits):  # is_valid_phone_number()
            message = f"Message: [{device}] Invalid destination number"
            w.write(response(aid, "Error", message, "ID: (nil)"))
            return
        sms_id = f"0x{next(self._ids):x}"
        self.issued_ids.append(sms_id)
        status = "NotSent" if number in self.failing_numbers else "Sent"
        answer = response(
            aid, "Success", f"Message: [{device}] SMS queued for send", f"ID: {sms_id}"
        )
        if self.stale_status_first:
            self._broadcast(self._status_event(device, sms_id, "NotSent"))
        if number in self.silent_numbers:
            w.write(answer)
        elif self.status_delay <= 0:
            # One write: both arrive in one read, so the client dispatches the
            # event before its awaiting coroutine has seen the response.
            w.write(answer + self._status_event(device, sms_id, status))
            self._broadcast(self._status_event(device, sms_id, status), skip=w)
        else:
            w.write(answer)
            self._track(asyncio.create_task(self._later(device, sms_id, status)))

    def emit_status(self, device: str, sms_id: str, status: str) -> None:
        """Send a DongleSMSStatus now, as chan_dongle would for any SMS."""
        self._broadcast(self._status_event(device, sms_id, status))

    async def _later(self, device: str, sms_id: str, status: str) -> None:
        await asyncio.sleep(self.status_delay)
        self._broadcast(self._status_event(device, sms_id, status))

    @staticmethod
    def _status_event(device: str, sms_id: str, status: str) -> bytes:
        return (
            f"Event: DongleSMSStatus\r\nPrivilege: call,all\r\nDevice: {device}\r\n"
            f"ID: {sms_id}\r\nStatus: {status}\r\n\r\n"
        ).encode()

    def _broadcast(self, data: bytes, skip: asyncio.StreamWriter | None = None) -> None:
        """Manager events go to every logged-in session that asked for the class."""
        for w, client in list(self._clients.items()):
            if w is not skip and client.wants("call") and not w.is_closing():
                w.write(data)
