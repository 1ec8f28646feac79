"""The gateway Asterisk nodes one dispatcher uses, and which node takes a send.

The nodes are rows of the `gateways` table (`amivono gateways add`); with no
rows, the AMIVONO_ARI_* settings describe the single node, named 'default',
as before the table existed. The dispatcher reads the table every second
(`refresh`), so adding, disabling or removing a node needs no restart. Each
node has its own ARI client and event WebSocket.

Routing (also in docs/decisions.md, "Several gateways"):
- a node takes new work only while it is enabled and its event WebSocket is
  connected: a node whose Asterisk goes away stops taking work at once;
- an SMS goes to the usable node whose next free send slot is earliest, each
  node's slots spaced by its own pace (its --sms-per-second divided among
  the live dispatchers that use it), so under load each node carries work in
  proportion to its pace and never more than it; among nodes free at once,
  the one with the least work for its weight (stride scheduling, weight =
  its pace), so at any load the shares follow the paces;
- a call's node is chosen in the claim's SQL (sql/voice_messages.sql,
  claim_due_calls): the free slot that brings the least fill, (calls in
  flight + 1) / cap, across all dispatchers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from service import metrics
from service.settings import Settings
from service.store.database import OUTAGE, until_back
from service.store.queries import queries
from service.telephony.ari import AriClient

log = logging.getLogger(__name__)

DEFAULT = "default"  # the node the AMIVONO_ARI_* settings describe when the table is empty
HEARTBEAT_FRESH = 5.0  # seconds a dispatcher's heartbeat counts as live
# Asterisk answers 202 to sendMessage when it queues the SIP MESSAGE, not
# when it leaves: a send handed to a node this long before the node was lost
# may have died with it, and is sent again through another node.
HANDOFF_DOUBT = 1.0
# Time for the outcomes of sends in flight at the loss to be recorded first.
RECORD_GRACE = 1.0


@dataclass(frozen=True)
class GatewayConfig:
    name: str
    ari_url: str
    ari_user: str
    ari_password: str
    trunk: str
    calls: int
    sms_per_second: float  # across all dispatchers; 0: not paced here
    enabled: bool = True

    @classmethod
    def from_settings(cls, s: Settings) -> GatewayConfig:
        # The single node of an install without gateway rows: its SMS pace is
        # the dispatcher's own AMIVONO_SMS_PER_SECOND, applied by the worker
        # as before, so it is not paced a second time here.
        return cls(DEFAULT, s.ari_url, s.ari_user, s.ari_password, s.trunk_endpoint,
                   s.calls_per_trunk, 0.0)

    @classmethod
    def from_row(cls, row: Any, s: Settings) -> GatewayConfig:
        return cls(row["name"], row["ari_url"], row["ari_user"], row["ari_password"],
                   row["trunk"] or s.trunk_endpoint,
                   s.calls_per_trunk if row["calls"] is None else row["calls"],
                   s.sms_per_second if row["sms_per_second"] is None
                   else float(row["sms_per_second"]),
                   row["enabled"])

    def same_node(self, other: GatewayConfig) -> bool:
        return (self.ari_url, self.ari_user, self.ari_password) == (
            other.ari_url, other.ari_user, other.ari_password)


EventHandler = Callable[["Node", dict[str, Any]], Awaitable[None]]
NodeHandler = Callable[["Node"], Awaitable[None]]
LostHandler = Callable[["Node"], None]


class Node:
    """One gateway Asterisk as this dispatcher sees it."""

    def __init__(self, config: GatewayConfig, app: str) -> None:
        self.config = config
        self.ari = AriClient(config.ari_url, config.ari_user, config.ari_password, app)
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.removed = False
        self.dispatchers = 1  # live dispatchers sharing its SMS pace, this one included
        self.next_start = 0.0
        self.sms_pass = 0.0  # stride scheduling: grows by 1/weight per SMS taken
        self.sms_in_flight = 0
        self._sends: deque[float] = deque()
        self._handed: deque[tuple[float, int]] = deque()  # (when, attempt id), recent
        self._error: str | None = None
        self._error_at: datetime | None = None
        self.lost_at: float | None = None

    @property
    def name(self) -> str:
        return self.config.name

    def connected(self) -> bool:
        return self.ari.connected.is_set()

    def usable(self) -> bool:
        return self.config.enabled and not self.removed and self.connected()

    def weight(self) -> float:
        return self.config.sms_per_second or 1.0

    def gap(self) -> float:
        rate = self.config.sms_per_second / max(1, self.dispatchers)
        return 1.0 / rate if rate > 0 else 0.0

    def note_send(self) -> None:
        self._sends.append(time.monotonic())

    def note_handed(self, attempt_id: int) -> None:
        now = time.monotonic()
        self._handed.append((now, attempt_id))
        while self._handed and self._handed[0][0] < now - HANDOFF_DOUBT:
            self._handed.popleft()

    def unsettled(self, lost_at: float) -> list[int]:
        """The attempts handed to it in the moment before it was lost."""
        return [a for t, a in self._handed if t >= lost_at - HANDOFF_DOUBT]

    def sends_per_second(self) -> float:
        cutoff = time.monotonic() - 5.0
        while self._sends and self._sends[0] < cutoff:
            self._sends.popleft()
        return len(self._sends) / 5.0

    def note_error(self, text: str) -> None:
        self._error, self._error_at = text, datetime.now(UTC)

    def last_error(self) -> tuple[str | None, datetime | None]:
        if self.ari.last_error is not None and self._error is None:
            self.note_error(self.ari.last_error)
        if self.ari.last_error is not None and self.ari.last_error != self._error:
            # The event WebSocket's own failure is news only once.
            self.note_error(self.ari.last_error)
            self.ari.last_error = None
        return self._error, self._error_at


class GatewayPool:
    """Every gateway node of this dispatcher, kept in step with the table."""

    def __init__(self, settings: Settings, app: str) -> None:
        self.settings = settings
        self.app = app
        self.nodes: dict[str, Node] = {}
        self.configured = False  # rows exist in the gateways table
        self._sms_vtime = 0.0  # the pass of the node last chosen for an SMS
        self._db: asyncpg.Pool | None = None
        self._resends: set[asyncio.Task[None]] = set()
        self._on_event: EventHandler | None = None
        self._on_connect: NodeHandler | None = None
        self._on_lost: LostHandler | None = None
        self._on_resend: Callable[[], None] | None = None

    def bind(self, on_event: EventHandler, on_connect: NodeHandler,
             on_lost: LostHandler, on_resend: Callable[[], None]) -> None:
        """What to call on each node's events, (re)connections and losses,
        and when SMS are due again because a node was lost."""
        self._on_event, self._on_connect, self._on_lost = on_event, on_connect, on_lost
        self._on_resend = on_resend

    # --- which node -----------------------------------------------------

    def get(self, name: str | None) -> Node | None:
        return self.nodes.get(name or DEFAULT)

    def usable(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.usable()]

    def ready(self) -> bool:
        return any(n.usable() for n in self.nodes.values())

    def fallback(self) -> str:
        """The node attempts made before gateways existed count for."""
        return DEFAULT

    def call_caps(self) -> tuple[list[str], list[int]]:
        """The nodes a call may be claimed for now, and their caps."""
        usable = self.usable()
        return [n.name for n in usable], [n.config.calls for n in usable]

    async def sms_slot(self, exclude: set[str]) -> Node | None:
        """A usable node for one SMS, waited for until its pace allows the
        send; None when no node (outside `exclude`) is usable."""
        while True:
            candidates = [n for n in self.usable() if n.name not in exclude]
            if not candidates:
                return None
            now = time.monotonic()
            # A node back (or new) starts level with the others, not with
            # the credit of all the time it was away.
            for n in candidates:
                n.sms_pass = max(n.sms_pass, self._sms_vtime)
            node = min(candidates, key=lambda n: (max(now, n.next_start), n.sms_pass, n.name))
            self._sms_vtime = node.sms_pass
            start = max(now, node.next_start)
            node.next_start = start + node.gap()
            node.sms_pass += 1.0 / node.weight()
            if start > now:
                await asyncio.sleep(start - now)
            if node.usable():  # it may have gone while we waited
                return node

    # --- following the table -------------------------------------------

    async def refresh(self, pool: asyncpg.Pool, busy: Callable[[str], bool]) -> None:
        """Read the gateways table and start, update or stop nodes to match.
        `busy(name)`: calls are still in flight on the node, so a removed
        node keeps its event WebSocket until they end."""
        self._db = pool
        try:
            rows = await queries.gateways.all(pool)
        except OUTAGE as exc:
            if not self.nodes:
                raise
            log.warning("gateways: cannot read the table, keeping %s: %s",
                        ", ".join(self.nodes), exc)
            return
        configs = ([GatewayConfig.from_row(r, self.settings) for r in rows] if rows
                   else [GatewayConfig.from_settings(self.settings)])
        self.configured = bool(rows)
        wanted = {c.name: c for c in configs}
        for name, node in list(self.nodes.items()):
            config = wanted.get(name)
            if config is not None and config.same_node(node.config):
                if config != node.config:
                    if config.enabled != node.config.enabled:
                        log.warning("gateway %s: %s", name,
                                    "enabled" if config.enabled else "disabled: no new work")
                    node.config = config
                node.removed = False
                continue
            if not node.removed:
                log.warning("gateway %s: removed: no new work", name)
                node.removed = True
            if not busy(name):
                await self._stop(node)
                del self.nodes[name]
                # A removed node's gauges go too: a stale `connected 1` would lie.
                for gauge in (metrics.GATEWAY_CONNECTED, metrics.GATEWAY_CALLS_IN_FLIGHT):
                    with contextlib.suppress(KeyError):
                        gauge.remove(name)
        for name, config in wanted.items():
            if name not in self.nodes:
                self._start(config)

    def _start(self, config: GatewayConfig) -> None:
        node = Node(config, self.app)
        self.nodes[config.name] = node

        async def on_event(event: dict[str, Any]) -> None:
            if self._on_event is not None:
                await self._on_event(node, event)

        async def on_connect() -> None:
            if node.lost_at is not None:
                log.warning("gateway %s: back after %.1f s: taking work again", node.name,
                            time.monotonic() - node.lost_at)
            else:
                log.info("gateway %s: connected (%s)", node.name, config.ari_url)
            node.lost_at = None
            metrics.GATEWAY_CONNECTED.labels(node.name).set(1)
            if self._on_connect is not None:
                await self._on_connect(node)

        def on_disconnect() -> None:
            node.lost_at = time.monotonic()
            node.note_error(node.ari.last_error or "ARI event connection closed")
            log.warning("gateway %s: lost (%s): new work goes to the other nodes",
                        node.name, node.ari.last_error or "connection closed")
            metrics.GATEWAY_CONNECTED.labels(node.name).set(0)
            unsettled = node.unsettled(node.lost_at)
            if unsettled:
                task = asyncio.create_task(self._resend(node, unsettled))
                self._resends.add(task)
                task.add_done_callback(self._resends.discard)
            if self._on_lost is not None:
                self._on_lost(node)

        metrics.GATEWAY_CONNECTED.labels(node.name).set(0)
        node.task = asyncio.create_task(node.ari.run_events(
            on_event, node.stop, on_connect=on_connect, on_disconnect=on_disconnect,
            max_backoff=self.settings.ari_reconnect_max_seconds))
        log.info("gateway %s: using %s (trunk %s, %d calls, %s SMS/s)", config.name,
                 config.ari_url, config.trunk, config.calls,
                 f"{config.sms_per_second:g}" if config.sms_per_second else "dispatcher's")

    async def _resend(self, node: Node, attempt_ids: list[int]) -> None:
        """Send again, through the other nodes, what the lost node may not have
        sent. A send whose outcome is not recorded yet (its finish_send not
        committed) is waited for, not skipped: tried again until it is
        recorded or its lease ends, through database outages as long."""
        await asyncio.sleep(RECORD_GRACE)
        if self._db is None:
            return
        db = self._db
        detail = (f"handed to gateway {node.name} less than {HANDOFF_DOUBT:g} s before it"
                  " was lost: the SMS may not have left it, sent again")
        deadline = time.monotonic() + self.settings.lease_seconds

        async def bounded(write: Callable[[], Awaitable[Any]]) -> Any:
            return await asyncio.wait_for(until_back(write, "gateways: resending"),
                                          max(0.0, deadline - time.monotonic()))

        waiting = attempt_ids

        async def still_open() -> list[int]:
            rows = await queries.sms_messages.unsettled_open(db, attempt_ids=waiting)
            return [r["id"] for r in rows]

        async def resend() -> list[Any]:
            return list(await queries.sms_messages.resend_unsettled(
                db, attempt_ids=waiting, detail=detail))

        try:
            while waiting:
                # Open before the resend: one recorded in between is tried again.
                open_ids = await bounded(still_open)
                self._report_resent(node, await bounded(resend))
                waiting = open_ids
                if waiting:
                    await asyncio.sleep(RECORD_GRACE / 4)
        except TimeoutError:
            log.error("gateway %s: %d sends still unsettled when their leases ended: their "
                      "next claim sends them again", node.name, len(waiting))

    def _report_resent(self, node: Node, rows: list[Any]) -> None:
        if rows:
            metrics.GATEWAY_REROUTES.labels(node.name).inc(len(rows))
            log.warning("gateway %s: %d SMS handed to it just before it was lost are "
                        "sent again through the other nodes (attempts now unknown)",
                        node.name, len(rows))
            if self._on_resend is not None:
                self._on_resend()

    async def _stop(self, node: Node) -> None:
        node.stop.set()
        if node.task is not None:
            await asyncio.gather(node.task, return_exceptions=True)
        await node.ari.close()

    async def close(self) -> None:
        await asyncio.gather(*self._resends, return_exceptions=True)
        for node in list(self.nodes.values()):
            await self._stop(node)
        self.nodes.clear()

    # --- live state ------------------------------------------------------

    async def heartbeat(self, pool: asyncpg.Pool, dispatcher: str,
                        calls: dict[str, int]) -> None:
        """Write this dispatcher's view of each node, and learn how many
        dispatchers share each node's SMS pace."""
        nodes = list(self.nodes.values())
        errors = [n.last_error() for n in nodes]
        await queries.gateways.heartbeat(
            pool, dispatcher=dispatcher, gateways=[n.name for n in nodes],
            connected=[n.connected() for n in nodes], in_use=[n.usable() for n in nodes],
            calls=[calls.get(n.name, 0) for n in nodes],
            sends=[n.sends_per_second() for n in nodes],
            errors=[e or "" for e, _ in errors], error_ats=[at for _, at in errors])
        users = {r["gateway"]: r["dispatchers"] for r in await queries.gateways.users(
            pool, fresh_seconds=HEARTBEAT_FRESH)}
        for node in nodes:
            # Its own row counts only while it uses the node; count itself anyway.
            sharing = max(1, users.get(node.name, 0) + (0 if node.usable() else 1))
            if sharing != node.dispatchers and node.config.sms_per_second:
                log.info("gateway %s: SMS pace %g/s here (shared by %d dispatchers)",
                         node.name, node.config.sms_per_second / sharing, sharing)
            node.dispatchers = sharing
            metrics.GATEWAY_CALLS_IN_FLIGHT.labels(node.name).set(calls.get(node.name, 0))
