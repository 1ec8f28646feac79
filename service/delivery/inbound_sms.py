"""SMS the trunk delivers to the gateway: replies, STOP/START/HELP, and the
carrier's delivery reports, taken over ARI.

Asterisk answers the carrier 202 before any handler runs, so the gateway's
dialplan first appends every inbound MESSAGE to an inbox file, which the
dispatchers replay (`replay_inbox`): what came while none listened is stored
when one is back. For speed, every dispatcher also subscribes its Stasis app
to the trunk's endpoint after each (re)connection and hears each MESSAGE at
once (`TextMessageReceived`). Storage is keyed by the SIP request (Call-ID and
CSeq) and reports by their attempt, so hearing one twice, or from both paths,
changes nothing.

A delivery report costs one write in all, however many dispatchers hear it:
over ARI only the dispatcher that sent its attempt records it (`mine`); the
replay, done by one dispatcher at a time, reads a line only once it is
REPORT_GRACE_SECONDS old and writes the reports that are still missing then
(the sender died or lost its ARI connection, or the attempt is not one this
process remembers). Until the replay has found the inbox file (none
configured, none yet, or a path this host cannot see) every dispatcher
records every report it hears, as nothing else would.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import os
import re
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from service import metrics
from service.delivery.gateway_pool import GatewayPool
from service.domain.delivery_receipts import NotAReceipt, Receipt, parse_receipt
from service.domain.phone_numbers import InvalidNumber, parse_e164
from service.settings import Settings
from service.store import inbound_messages
from service.store.database import BatchRefused, through_outages
from service.store.queries import queries
from service.store.write_batches import WriteBatch
from service.telephony.ari import AriClient, AriError

log = logging.getLogger(__name__)

REPORT_HEADER = "x-delivery-report"
INBOX_READ_BYTES = 1 << 20  # per replay step
# How long a line waits in the inbox before the replay reads it: its sender
# records a report heard over ARI well within this, so the replay finds it
# recorded and writes nothing.
REPORT_GRACE_SECONDS = 2.0
_SIP_USER = re.compile(r"(?:sips?|pjsip):([^@;>]+)", re.IGNORECASE)


def sip_user(uri: str) -> str:
    """The user part of a SIP URI as Asterisk writes it in a message's
    from/to ('"x" <sip:+4670@host>', 'pjsip:+4673@host')."""
    match = _SIP_USER.search(uri)
    return match.group(1) if match else uri


def header(variables: dict[str, str], name: str) -> str | None:
    """A SIP header of the MESSAGE (Asterisk passes them as variables)."""
    for key, value in variables.items():
        if key.lower() == name:
            return value
    return None


class AgedSize:
    """The largest size of the file that this process saw at least `grace`
    seconds ago (by its own monotonic clock: no trust in Asterisk's)."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.inode: int | None = None
        self.seen: deque[tuple[float, int]] = deque()

    def observe(self, inode: int, size: int, now: float) -> int:
        if inode != self.inode or (self.seen and size < self.seen[-1][1]):
            self.inode = inode  # a new or truncated file: its sizes start again
            self.seen.clear()
        self.seen.append((now, size))
        while len(self.seen) > 1 and now - self.seen[1][0] >= self.grace:
            self.seen.popleft()
        seen_at, old_size = self.seen[0]
        return old_size if now - seen_at >= self.grace else 0


class InboundSms:
    def __init__(self, settings: Settings, pool: Any, gateways: GatewayPool,
                 wake_sms: Callable[[], None], mine: Callable[[int], bool]) -> None:
        self.settings = settings
        self.pool = pool
        self.gateways = gateways  # every node's trunk delivers; console lines go to one
        self.wake_sms = wake_sms  # an answer (STOP confirmation, HELP) is due now
        # Did this process send that attempt (and not hear its report yet)?
        self.mine = mine
        # Reports that come while the previous ones are being written are
        # written together, in one transaction (write_batches.py).
        self.reports: WriteBatch[tuple[Receipt, str], Any] = WriteBatch(self._write_reports)
        self.inbox_size = AgedSize(REPORT_GRACE_SECONDS)
        # The file is there (the last replay found it): it is the safety net.
        # Checked at once too: the first replay comes after the first sends.
        self.inbox_seen = bool(settings.sms_inbox) and os.path.exists(settings.sms_inbox)

    async def subscribe(self, ari: AriClient, trunk: str) -> None:
        """After every ARI (re)connection to a node: hear what its trunk delivers."""
        source = f"endpoint:PJSIP/{trunk}"
        try:
            await ari.subscribe(source)
            log.info("inbound SMS: subscribed to %s", source)
        except AriError as exc:
            log.error("inbound SMS: cannot subscribe to %s: %s", source, exc)

    async def on_event(self, event: dict[str, Any]) -> None:
        if event.get("type") != "TextMessageReceived":
            return
        message = event.get("message") or {}
        variables = message.get("variables") or {}
        body = str(message.get("body") or "")
        if self._is_report(header(variables, REPORT_HEADER)):
            try:
                receipt = parse_receipt(body)
            except NotAReceipt:
                if not self.inbox_seen:
                    self._malformed(body, "ARI")
                return  # the replay says so, once
            # Another dispatcher's attempt is left to it (and to the replay).
            if self.mine(receipt.ref) or not self.inbox_seen:
                await self._report(receipt, body)
            return
        await self.handle(str(message.get("from") or ""), str(message.get("to") or ""),
                          body, header(variables, "call-id"), header(variables, "cseq"))

    async def replay_inbox(self) -> None:
        """Store what the gateway's inbox file holds past the recorded offset
        (what came while no dispatcher listened, what ARI dropped, the reports
        of a sender that died); one dispatcher at a time, lines at least
        REPORT_GRACE_SECONDS old."""
        path = self.settings.sms_inbox
        if not path:
            return
        try:
            f = open(path, "rb")  # noqa: ASYNC230, SIM115 (a local file, read in small steps)
        except FileNotFoundError:
            if self.inbox_seen:
                log.warning("inbox %s is gone: every report heard is recorded here", path)
            self.inbox_seen = False
            return
        self.inbox_seen = True
        with f:
            stat = os.fstat(f.fileno())
            inode = stat.st_ino
            limit = self.inbox_size.observe(inode, stat.st_size, time.monotonic())
            async with self.pool.acquire() as conn, conn.transaction():
                at = await queries.inbox_offsets.replay_for(conn, path=path)
                if at is None:  # another dispatcher is replaying, or no row yet
                    await queries.inbox_offsets.ensure(self.pool, path=path, inode=inode)
                    at = await queries.inbox_offsets.replay_for(conn, path=path)
                if at is None:
                    return  # another dispatcher is replaying
                start = at["offset"] if at["inode"] == inode else 0
                if stat.st_size < start:
                    start = 0  # truncated in place
                f.seek(start)
                chunk = f.read(min(INBOX_READ_BYTES, max(0, limit - start)))
                end = chunk.rfind(b"\n") + 1  # whole lines only: Asterisk may be mid-write
                await self._replay(chunk[:end])
                if (start + end, inode) != (at["offset"], at["inode"]):
                    await queries.inbox_offsets.set_to(conn, path=path, inode=inode,
                                                       offset=start + end)

    async def _replay(self, lines: bytes) -> None:
        reports: dict[int, tuple[Receipt, str]] = {}  # by attempt: the first of each
        for line in lines.splitlines():
            fields = line.split(b"|")
            if len(fields) != 7:
                log.warning("inbox: a line that is not ours skipped: %r", line[:80])
                continue
            frm, to, body, call_id, cseq, report = (
                base64.b64decode(x).decode("utf-8", "replace") for x in fields[1:])
            if not self._is_report(report):
                await self.handle(frm, to, body, call_id or None, cseq)
                continue
            try:
                receipt = parse_receipt(body)
            except NotAReceipt:
                self._malformed(body, "inbox")
                continue
            reports.setdefault(receipt.ref, (receipt, body))
        if not reports:
            return
        # One read for the chunk: those recorded already (by their sender,
        # over ARI, within the grace) and those naming no attempt cost
        # nothing more.
        reported = {row["attempt_id"]: row["reported"]
                    for row in await queries.sms_delivery_reports.reported(
                        self.pool, attempt_ids=list(reports))}
        for ref in reports.keys() - reported.keys():
            self._unmatched(ref)
        await asyncio.gather(*(self._report(reports[ref][0], reports[ref][1], replayed=True)
                               for ref, done in reported.items() if not done))

    @staticmethod
    def _is_report(flag: str | None) -> bool:
        return (flag or "").lower() in ("yes", "1", "true")

    async def handle(self, frm: str, to: str, body: str, call_id: str | None,
                     cseq: str | None) -> None:
        """An inbound SMS (not a report), heard over ARI or replayed."""
        # Without a Call-ID nothing can tell a resend from a new message.
        sip_key = f"{call_id}/{cseq}" if call_id else f"no-call-id/{uuid.uuid4()}"
        try:
            phone = parse_e164(sip_user(frm))
            number = parse_e164(sip_user(to))
        except InvalidNumber as exc:
            log.warning("inbound SMS with an unusable number dropped: %s (%s)", exc, sip_key)
            return
        await self._inbound(phone, number, body, sip_key)

    async def _inbound(self, phone: str, number: str, body: str, sip_key: str) -> None:
        stored = await self._write(lambda: inbound_messages.record(
            self.pool, from_number=phone, to_number=number, body=body, sip_key=sip_key,
            settings=self.settings))
        if stored is None:
            log.info("inbound SMS %s already stored", sip_key)
            return
        metrics.INBOUND.labels(stored.kind, "yes" if stored.account_id else "no").inc()
        if stored.account_id is None:
            line = f"inbound SMS {stored.id} from {phone} to {number}: no account owns {number}"
        else:
            line = (f"inbound SMS {stored.id} from {phone} to {number}: {stored.kind}; "
                    f"stopped {', '.join(map(str, stored.affected)) or 'nothing'}")
            if stored.answer_id is not None:
                line += f"; answered with message {stored.answer_id}"
                self.wake_sms()
        log.info(line, extra={"inbound_id": stored.id, "kind": "inbound"})
        self._console("AMIVONO_INBOUND", line)

    def _malformed(self, body: str, where: str) -> None:
        metrics.REPORTS.labels("malformed").inc()
        log.warning("delivery report dropped (%s): not a receipt: %r", where, body[:80])

    def _unmatched(self, ref: int) -> None:
        metrics.REPORTS.labels("duplicate or unmatched").inc()
        log.info("delivery report for attempt %s: duplicate or no such attempt", ref)

    async def _report(self, receipt: Receipt, body: str, replayed: bool = False) -> None:
        row = await self.reports.add((receipt, body))
        if row is None:
            self._unmatched(receipt.ref)
            return
        result = "delivered" if receipt.delivered else "undelivered"
        metrics.REPORTS.labels(result).inc()
        line = (f"report for message {row['id']} attempt {receipt.ref}: {result} "
                f"(stat {receipt.stat}, err {receipt.error})")
        log.info(line + (" (from the inbox)" if replayed else ""),
                 extra={"message_id": row["id"], "attempt_id": receipt.ref, "kind": "sms"})
        if not receipt.delivered:
            self.wake_sms()  # the retry may be due
        self._console("AMIVONO_REPORT", line)

    async def _write(self, write: Callable[[], Any]) -> Any:
        """Through short database outages (the carrier was already answered);
        one that lasts is left to the inbox replay."""
        return await through_outages(write, "inbound SMS: writing",
                                     (0.0, 0.5, 2.0, 5.0, 10.0))

    async def _write_reports(self, reports: list[tuple[Receipt, str]]) -> list[Any]:
        if len(reports) > 1:
            try:
                rows: list[Any] = await self._write(lambda: inbound_messages.record_reports(
                    self.pool, reports, self.settings))
                return rows
            except BatchRefused as exc:
                log.warning("recording %d delivery reports together failed (%s): one by one",
                            len(reports), exc)
        # Each on its own, as if never batched.
        return list(await asyncio.gather(*(
            self._write(functools.partial(inbound_messages.record_report, self.pool, receipt,
                                          body, self.settings))
            for receipt, body in reports), return_exceptions=True))

    def _console(self, variable: str, line: str) -> None:
        # One readable line on the gateway console, as for outbound sends.
        usable = self.gateways.usable()
        if usable:
            usable[0].ari.console_line(variable, line)
