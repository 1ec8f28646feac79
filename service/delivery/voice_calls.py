"""Voice calls through ARI: originate, play the file when answered, hang up,
and record a truthful outcome for every attempt.

A call is placed with `POST /channels`, its channelId derived from the
attempt's id, so a retried originate cannot place a second call (Asterisk
answers 409). StasisStart means answered: the file plays, and the channel is
hung up when the playback finishes. A call never answered ends with only
ChannelDestroyed, whose Q.850 cause tells why. We keep timers of our own in
case an event never comes, and after every ARI (re)connection reconcile our
calls with the channels Asterisk still has, since Asterisk drops an app's
events while it is disconnected.

With acknowledge: true the call goes on after the message: a prompt ("press
1"), then AMIVONO_ACK_SECONDS of listening. Keys (ChannelDtmfReceived) count
during the message, the prompt and the listening: 1 acknowledges (recorded at
once, a confirmation plays, the call ends); another key plays the prompt once
more; no key ends the call unacknowledged.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass, field
from typing import Any

from service import metrics
from service.delivery.gateway_pool import Node
from service.delivery.queue_worker import Job, QueueWorker, WorkerContext
from service.domain.call_causes import CallEnd, classify
from service.domain.phone_numbers import E164_SHAPE as _E164
from service.domain.voice_prompts import ACK_KEY
from service.store import speech, voice_messages
from service.store.database import OUTAGE, BatchRefused
from service.store.queries import queries
from service.store.write_batches import WriteBatch
from service.telephony.ari import AriClient, AriError

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "amivono-call-"
# Seconds a message whose call could not be placed waits before it is due
# again (claims also wait while the ARI connection is down).
NOT_PLACED_WAIT = 2.0
# Originates a live Asterisk refuses (5xx) in a row before the message ends
# `failed`: ARI answers 500 for lasting trouble too (a wrong trunk name).
NOT_PLACED_REFUSALS = 5

# The ARI events a call acts on (VoiceWorker._handle).
_HANDLED = frozenset({"StasisStart", "PlaybackStarted", "PlaybackFinished",
                      "ChannelDtmfReceived", "ChannelDestroyed"})


def channel_id_for(attempt_id: int) -> str:
    # Fixed width: Asterisk matched 'amivono-call-1' against an existing
    # 'amivono-call-10' (a prefix) and refused the originate as a duplicate.
    # Ids of one length are never prefixes of each other.
    return f"{CHANNEL_PREFIX}{attempt_id:012d}"


@dataclass
class Call:
    attempt_id: int
    message_id: int
    to: str
    from_: str
    file_name: str
    account_id: int
    seconds: float
    gateway: str = "default"  # the node that carries it (chosen by the claim)
    placed: bool = False
    answered: bool = False
    playback_started: bool = False
    playback_finished: bool = False
    playback_failed: bool = False
    canceled: bool = False
    speech_stem: str | None = None  # text spoken instead of the file
    acknowledge: bool = False
    prompt_file: str | None = None
    prompt_stem: str | None = None
    confirm_stem: str | None = None
    # The acknowledgement's progress: message, prompt, listen, confirm.
    stage: str = "message"
    playback_id: str = ""  # the playback whose end moves the call on
    prompts_played: int = 0
    wrong_key: bool = False
    acknowledged: bool = False
    prompt_media: str | None = None
    prompt_seconds: float = 0.0
    listening: asyncio.TimerHandle | None = None
    # Events already handled: the app hears the trunk endpoint's channels
    # twice (its own channel and the endpoint subscription for SMS).
    seen: set[tuple[Any, ...]] = field(default_factory=set)
    # Our timer's end of a call it could not hang up (its node was lost):
    # the reconcile hangs the channel up if the node comes back with it.
    overdue: CallEnd | None = None
    # Writes of answer and playback times: in the background, so a database
    # outage never holds up the call's events; the outcome waits for them.
    marks: list[asyncio.Task[Any]] = field(default_factory=list)
    # The handling of this call's latest event: the next one waits for it, so
    # a call's events are handled in order, each call apart from the others.
    handling: asyncio.Task[None] | None = None
    end: asyncio.Future[CallEnd] = field(default_factory=lambda: asyncio.get_running_loop()
                                         .create_future())

    @property
    def channel_id(self) -> str:
        return channel_id_for(self.attempt_id)

    def finish(self, end: CallEnd) -> None:
        if self.listening is not None:
            self.listening.cancel()
        if not self.end.done():
            self.end.set_result(end)

    def answered_seconds(self, ack_seconds: float) -> float:
        """How long an answered call may last before our timer ends it."""
        extra = 0.0
        if self.acknowledge:  # two prompts, their listening, a confirmation
            extra = 2 * (self.prompt_seconds + ack_seconds) + 15.0
        return self.seconds + extra + 20.0


class VoiceWorker(QueueWorker):
    kind = "voice"

    def __init__(self, ctx: WorkerContext) -> None:
        s = ctx.settings
        super().__init__(ctx, s.calls_per_dispatcher, s.calls_per_second)
        self.calls: dict[str, Call] = {}
        self._connected_before: set[str] = set()
        self._timers: set[asyncio.Task[None]] = set()
        self._lost_timers: set[asyncio.Task[None]] = set()
        self._handling: set[asyncio.Task[None]] = set()
        # Answer and playback marks that come while the previous ones are being
        # written go together (write_batches.py): one commit, one WAL flush, for
        # many calls instead of one each. A call's own marks still go one after
        # the other (_mark), so never two of one call in a batch.
        self.mark_writes: WriteBatch[tuple[int, str], None] = WriteBatch(self._write_marks)
        # Outcomes the same way: each call's job ends once its own is committed.
        self.finish_writes: WriteBatch[voice_messages.Finish, None] = WriteBatch(
            self._write_finishes)

    def _ari(self, call: Call) -> AriClient | None:
        node = self.ctx.gateways.get(call.gateway)
        return None if node is None else node.ari

    def _node_lost(self, call: Call) -> bool:
        node = self.ctx.gateways.get(call.gateway)
        return node is not None and not node.connected()

    def calls_per_gateway(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for call in self.calls.values():
            counts[call.gateway] = counts.get(call.gateway, 0) + 1
        return counts

    def ready(self) -> bool:
        return self.ctx.gateways.ready()

    async def seconds_until_due(self) -> float | None:
        due: float | None = await queries.voice_messages.seconds_until_due(self.pool)
        return due

    def _lease_seconds(self) -> float:
        # A message, its prompt twice (a file as long as a message at most), the
        # listening after each, a confirmation.
        s = self.settings
        return float(s.dial_timeout + 3 * s.max_sound_seconds + 2 * s.ack_seconds + 90)

    async def claim(self, limit: int) -> tuple[int, list[Job]]:
        names, caps = self.ctx.gateways.call_caps()
        if not names:
            return 0, []
        async with self.pool.acquire() as conn, conn.transaction():
            await queries.voice_messages.serialize_claims(conn)
            rows = await queries.voice_messages.claim_due_calls(
                conn, limit=limit, gateways=names, caps=caps,
                fallback=self.ctx.gateways.fallback(),
                dispatcher=self.ctx.name, lease_seconds=self._lease_seconds())
        jobs: list[Job] = []
        for row in rows:
            if row["attempt_id"] is None:
                continue
            call = Call(
                attempt_id=row["attempt_id"], message_id=row["id"], to=row["to_number"],
                from_=row["from_number"], file_name=row["file_name"],
                account_id=row["account_id"], seconds=(row["duration_ms"] or 0) / 1000,
                speech_stem=row["speech_stem"], acknowledge=row["acknowledge"],
                prompt_file=row["prompt_file"], prompt_stem=row["prompt_stem"],
                confirm_stem=row["confirm_stem"],
                gateway=row["gateway"] or self.ctx.gateways.fallback())
            if row["stem"] is None:  # the file is gone: nothing to play
                jobs.append(functools.partial(self._finish, call, CallEnd(
                    "failed", None, None, f"sound file {call.file_name!r} no longer exists",
                    False)))
                continue
            jobs.append(functools.partial(self._call, call))
        return len(rows), jobs

    async def _call(self, call: Call) -> None:
        s = self.settings
        if not (_E164.fullmatch(call.to) and _E164.fullmatch(call.from_)):
            await self._finish(call, CallEnd("failed", None, None, "number is not E.164", False))
            return
        node = self.ctx.gateways.get(call.gateway)
        if node is None or not node.usable():
            # Nothing was sent: the message waits for a node, as when ARI is down.
            await self._not_placed(call, AriError(
                None, f"gateway {call.gateway} went away before the call was placed",
                sent=False))
            return
        self.calls[call.channel_id] = call  # before originate: events may come first
        metrics.CALLS_IN_FLIGHT.set(len(self.calls))
        claimed = asyncio.get_running_loop().time()
        try:
            # One readable line per call on the gateway console, not awaited:
            # the originate no longer waits behind an ARI request of its own
            # (lines that come together share one request, as for SMS).
            node.ari.console_line(
                "AMIVONO_CALL",
                f"voice message {call.message_id} attempt {call.attempt_id}: calling "
                f"{call.to} to play {call.file_name or 'text'}"
                + (" and ask for 1" if call.acknowledge else ""))
            try:
                await node.ari.originate(
                    endpoint=f"PJSIP/{call.to}@{node.config.trunk}",
                    channel_id=call.channel_id,
                    caller_id=call.from_, timeout=s.dial_timeout, app_args="voice")
            except AriError as exc:
                if exc.not_done:
                    # Never placed: Asterisk is away or could not make the
                    # channel. Not an attempt; the message waits, as SMS do
                    # (a refusal by a live Asterisk only a few times in a row).
                    await self._not_placed(call, exc)
                    return
                if exc.status != 409:  # 409: this attempt's channel exists already
                    await self._finish(call, CallEnd(
                        "failed", None, "gateway lost" if exc.status is None else None,
                        f"originate on gateway {call.gateway} refused: {exc}", exc.retryable))
                    return
            call.placed = True
            metrics.CLAIM_TO_SEND.labels("voice").observe(
                asyncio.get_running_loop().time() - claimed)
            if call.canceled:
                await self._hangup(call)
            end = await self._await_end(call)
            await self._finish(call, end)
        finally:
            self.calls.pop(call.channel_id, None)
            metrics.CALLS_IN_FLIGHT.set(len(self.calls))

    async def _await_end(self, call: Call) -> CallEnd:
        """Wait for the channel to go, with timers of our own in case no event comes."""
        s = self.settings
        ring_deadline = s.dial_timeout + 10.0
        try:
            return await asyncio.wait_for(asyncio.shield(call.end), ring_deadline)
        except TimeoutError:
            pass
        if not call.answered:
            return await self._timed_out(call, CallEnd(
                "no-answer", None, None, f"no answer within {ring_deadline:g} s (our timer)",
                True))
        # Answered: allow the file's length (and the acknowledgement's) plus a
        # margin to play and hang up.
        try:
            return await asyncio.wait_for(asyncio.shield(call.end),
                                          call.answered_seconds(s.ack_seconds))
        except TimeoutError:
            return await self._timed_out(call, CallEnd(
                "failed", None, None, "the playback did not finish in time (our timer)", False))

    async def _timed_out(self, call: Call, late: CallEnd) -> CallEnd:
        """Our timer ran out: hang up, and end with `late` if no event ends it."""
        if not await self._hangup(call):
            # Not reached: `late` is kept on the call, so the reconcile hangs
            # the channel up when the node is back and it ends with `late`.
            call.overdue = late
            if self._node_lost(call):  # node_lost's timer or the reconcile ends it
                return await asyncio.shield(call.end)
            # Back already: its reconcile may have passed the call by while
            # our hangup was failing, and nothing else would hang it up.
            await self._hangup(call)
        return await self._grace(call, late)

    async def _grace(self, call: Call, fallback: CallEnd) -> CallEnd:
        try:
            return await asyncio.wait_for(asyncio.shield(call.end), 5.0)
        except TimeoutError:
            return fallback

    async def _hangup(self, call: Call) -> bool:
        """False when the call's node could not be reached."""
        ari = self._ari(call)
        if ari is None:
            return False
        try:
            await ari.hangup(call.channel_id)
        except AriError as exc:
            if exc.status != 404:
                log.warning("hangup of %s failed: %s", call.channel_id, exc)
            return exc.status is not None
        return True

    def _mark(self, call: Call, statement: Any, **params: Any) -> None:
        # One after the other, in the order the events came: a key is
        # recorded before the acknowledgement it made.
        previous = call.marks[-1] if call.marks else None

        async def write() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            if isinstance(statement, str):  # a MARK_*: with other calls' marks
                await self.mark_writes.add((call.attempt_id, statement))
            else:
                await self.record(statement, attempt_id=call.attempt_id, **params)

        call.marks.append(asyncio.create_task(write()))

    async def _write_marks(self, marks: list[tuple[int, str]]) -> list[None | BaseException]:
        if len(marks) > 1:
            try:
                await self.record(voice_messages.mark_calls, marks=marks)
                return [None] * len(marks)
            except BatchRefused as exc:
                log.warning("voice: writing %d marks together failed (%s): one by one",
                            len(marks), exc)
        # Each on its own, as if never batched: one that cannot be written
        # holds only itself (until_back retries it, as it always did).
        results = await asyncio.gather(*(
            self.record(voice_messages.mark_call, attempt_id=attempt_id, mark=mark)
            for attempt_id, mark in marks), return_exceptions=True)
        return [r if isinstance(r, BaseException) else None for r in results]

    async def _not_placed(self, call: Call, exc: AriError) -> None:
        log.warning("voice %s attempt %s to %s: not placed, waiting for Asterisk (%s)",
                    call.message_id, call.attempt_id, call.to, exc,
                    extra={"message_id": call.message_id, "attempt_id": call.attempt_id,
                           "kind": "voice"})
        await self.record(queries.voice_messages.not_placed, attempt_id=call.attempt_id,
                          detail=f"{exc}", refused=exc.sent,
                          refusals=NOT_PLACED_REFUSALS, wait_seconds=NOT_PLACED_WAIT)

    async def _finish(self, call: Call, end: CallEnd) -> None:
        if call.acknowledged:  # however the channel then went
            end = CallEnd("acknowledged", end.cause_code, end.cause_text,
                          f"answered; {ACK_KEY} pressed", False)
        metrics.SENDS.labels("voice", end.outcome).inc()
        metrics.GATEWAY_SENDS.labels(call.gateway, "voice", end.outcome).inc()
        log.info("voice %s attempt %s to %s on gateway %s: %s (%s, cause %s)", call.message_id,
                 call.attempt_id, call.to, call.gateway, end.outcome, end.detail, end.cause_code,
                 extra={"message_id": call.message_id, "attempt_id": call.attempt_id,
                        "kind": "voice"})
        if call.marks:  # answered_at before the outcome that reads it
            await asyncio.gather(*call.marks, return_exceptions=True)
        await self.finish_writes.add((call.attempt_id, end.outcome, end.cause_code,
                                      end.cause_text, end.detail, end.retryable, call.placed))

    async def _write_finishes(self, finishes: list[voice_messages.Finish]
                              ) -> list[None | BaseException]:
        minute_seconds = float(self.settings.minute_seconds)
        if len(finishes) > 1:
            try:
                await self.record(voice_messages.finish_calls, finishes=finishes,
                                  minute_seconds=minute_seconds)
                return [None] * len(finishes)
            except BatchRefused as exc:
                log.warning("voice: recording %d outcomes together failed (%s): one by one",
                            len(finishes), exc)
        # Each on its own, as if never batched (until_back retries it, as ever).
        results = await asyncio.gather(*(
            self.record(voice_messages.finish_calls, finishes=[finish],
                        minute_seconds=minute_seconds)
            for finish in finishes), return_exceptions=True)
        return [r if isinstance(r, BaseException) else None for r in results]

    # --- events -------------------------------------------------------------

    async def on_event(self, event: dict[str, Any]) -> None:
        """Takes a call's event from the node's one event reader and handles
        it in a task of its own, after the call's previous event: handling
        awaits ARI and the database (the file's lookup and the play on answer,
        the hang-up after the playback), and awaited here it held up every
        other call's events behind it (at 100 calls/s the reader fell
        seconds behind, and calls lasted that much longer)."""
        kind = event.get("type")
        if kind not in _HANDLED:
            return  # no task for the many events a call needs nothing from
        if kind in ("PlaybackStarted", "PlaybackFinished"):
            target = event.get("playback", {}).get("target_uri", "")
            call = self.calls.get(target.removeprefix("channel:"))
        else:
            call = self.calls.get(event.get("channel", {}).get("id", ""))
        if call is None:
            return
        playback = event.get("playback", {})
        once = (kind, event.get("timestamp"), playback.get("id"), playback.get("state"),
                event.get("digit"))
        if once in call.seen:
            return  # the same event through the endpoint subscription
        call.seen.add(once)
        previous = call.handling

        async def handle() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            await self._handle(call, kind, event)

        task = asyncio.get_running_loop().create_task(handle())
        call.handling = task
        self._handling.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._handled)

    def _handled(self, task: asyncio.Task[None]) -> None:
        self._handling.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("voice event handling failed", exc_info=task.exception())

    async def _handle(self, call: Call, kind: Any, event: dict[str, Any]) -> None:
        if kind == "StasisStart":
            await self._answered(call)
        elif kind == "PlaybackStarted":
            playback_id = event["playback"].get("id", "")
            if playback_id == f"{call.channel_id}-play":
                call.playback_started = True
                self._mark(call, voice_messages.MARK_PLAYING)
            elif "-prompt" in playback_id:
                self._mark(call, queries.voice_messages.mark_prompting)
        elif kind == "PlaybackFinished":
            if not call.playback_id or event["playback"].get("id") != call.playback_id:
                return  # one we stopped on purpose
            call.playback_id = ""  # its end moves the call on once
            failed = event["playback"].get("state") == "failed"
            if failed or not call.acknowledge or call.stage == "confirm":
                call.playback_finished = True
                call.playback_failed = failed
                await self._hangup(call)
            else:
                await self._after_playback(call)
        elif kind == "ChannelDtmfReceived":
            await self._key(call, str(event.get("digit", "")))
        elif kind == "ChannelDestroyed":
            # Once our timer has run out, its end is the call's: the
            # reconcile's hangup brings this event too, often before the
            # hangup's own response.
            call.finish(call.overdue or classify(call, event.get("cause"), event.get("cause_txt")))

    async def _play(self, call: Call, media: str | None, name: str) -> None:
        call.playback_id = f"{call.channel_id}-{name}"
        try:
            if media is None:
                raise AriError(None, f"the {name} audio cannot be found")
            ari = self._ari(call)
            if ari is None:
                raise AriError(None, f"gateway {call.gateway} is gone")
            await ari.play(call.channel_id, media, call.playback_id)
        except AriError as exc:
            log.warning("play on %s failed: %s", call.channel_id, exc)
            call.playback_failed = True
            call.playback_finished = True
            await self._hangup(call)

    async def _after_playback(self, call: Call) -> None:
        """The message or a prompt played to its end: the prompt (again, once,
        after a wrong key), else listen for a key."""
        if call.stage == "message" or (call.wrong_key and call.prompts_played < 2):
            await self._prompt(call)
            return
        call.stage = "listen"
        if call.listening is not None:  # one listening timer at a time
            call.listening.cancel()
        loop = asyncio.get_running_loop()
        call.listening = loop.call_later(self.settings.ack_seconds, self._listened, call)

    def _listened(self, call: Call) -> None:
        task = asyncio.get_running_loop().create_task(self._unacknowledged(call))
        self._timers.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._timers.discard)

    async def _prompt(self, call: Call) -> None:
        if call.listening is not None:
            call.listening.cancel()
        call.stage = "prompt"
        call.wrong_key = False
        call.prompts_played += 1
        await self._play(call, call.prompt_media, f"prompt{call.prompts_played}")

    async def _unacknowledged(self, call: Call) -> None:
        if call.stage == "listen" and not call.acknowledged:
            call.playback_finished = True  # all played: it ends `completed`
            await self._hangup(call)

    async def _key(self, call: Call, digit: str) -> None:
        if not digit or call.acknowledged:
            return
        self._mark(call, queries.voice_messages.record_key, key=digit)
        if not call.acknowledge or call.canceled:
            return
        if digit == ACK_KEY:
            await self._acknowledged(call)
        elif call.stage == "listen" and call.prompts_played < 2:
            await self._prompt(call)
        elif call.stage in ("message", "prompt"):
            call.wrong_key = True  # the prompt plays once more after this playback

    async def _acknowledged(self, call: Call) -> None:
        call.acknowledged = True
        # Queued at once: the call may end (and be finished) while we wait on ARI.
        self._mark(call, queries.voice_messages.acknowledge)
        if call.listening is not None:
            call.listening.cancel()
        stopped, call.stage = call.playback_id, "confirm"
        call.playback_id = ""
        ari = self._ari(call)
        try:
            if ari is not None and stopped:
                await ari.request("DELETE", f"/playbacks/{stopped}")
        except AriError:
            pass  # it had ended already
        try:
            # One readable line per acknowledgement on the gateway console.
            if ari is not None:
                await ari.set_global(
                    "AMIVONO_ACK",
                    f"voice message {call.message_id} attempt {call.attempt_id}: acknowledged "
                    f"by {call.to} (key {ACK_KEY})")
        except AriError as exc:
            log.warning("console line for %s failed: %s", call.channel_id, exc)
        log.info("voice %s attempt %s to %s: acknowledged", call.message_id, call.attempt_id,
                 call.to, extra={"message_id": call.message_id,
                                 "attempt_id": call.attempt_id, "kind": "voice"})
        await self._play(call, speech.media(self.settings, call.confirm_stem)
                         if call.confirm_stem else None, "confirm")

    async def _answered(self, call: Call) -> None:
        if call.answered:
            return
        call.answered = True
        self._mark(call, voice_messages.MARK_ANSWERED)
        if call.canceled:
            await self._hangup(call)
            return
        media = await self._media(call)
        if call.acknowledge:
            call.prompt_media = await self._prompt_media(call)
        await self._play(call, media, "play")

    async def _media(self, call: Call) -> str | None:
        """The file's audio as Asterisk names it, looked up at answer time, not
        at claim time: a replacement uploaded while the call rang removed the
        old audio, and the file's current audio is what plays. Spoken text
        never changes."""
        if call.speech_stem is not None:
            return speech.media(self.settings, call.speech_stem)
        found = await self._file(call, call.file_name)
        if found is None:
            return None
        call.seconds = found[1]
        return found[0]

    async def _prompt_media(self, call: Call) -> str | None:
        if call.prompt_file is None:
            if call.prompt_stem is None:
                return None
            call.prompt_seconds = speech.seconds(self.settings, call.prompt_stem)
            return speech.media(self.settings, call.prompt_stem)
        got = await self._file(call, call.prompt_file)
        if got is None:
            return None
        call.prompt_seconds = got[1]
        return got[0]

    async def _file(self, call: Call, name: str | None) -> tuple[str, float] | None:
        if name is None:
            return None
        try:
            found = await queries.sound_files.get(
                self.pool, account_id=call.account_id, name=name)
        except OUTAGE as exc:
            log.warning("looking up %s failed: %s", name, exc)
            return None
        if found is None:
            return None
        return (f"sound:{self.settings.sounds_dir_for_asterisk}/"
                f"{call.account_id}/{found['stem']}", found["duration_ms"] / 1000)

    async def reconcile(self, node: Node) -> None:
        """After a (re)connection to a node: a call on it whose channel
        Asterisk no longer has ended while we were not listening (Asterisk
        restarted, or the line dropped)."""
        if node.name in self._connected_before:
            metrics.ARI_RECONNECTS.inc()
        self._connected_before.add(node.name)
        # Calls placed before the list is read: one placed while it is read
        # may be missing from it and still be ringing.
        placed = [(cid, call) for cid, call in self.calls.items()
                  if call.placed and call.gateway == node.name]
        try:
            alive = await node.ari.channel_ids()
        except AriError as exc:
            log.warning("reconcile: cannot list channels: %s", exc)
            return
        for channel_id, call in placed:
            if channel_id not in alive:
                call.finish(CallEnd(
                    "failed", None, "gateway lost",
                    f"the channel disappeared while ARI of gateway {node.name} was "
                    "disconnected (Asterisk restart?)", True))
            elif call.overdue is not None and await self._hangup(call):
                # Our timer ran out while the node was away: end it now.
                call.finish(call.overdue)
        log.info("gateway %s: reconciled %d calls with %d channels", node.name, len(placed),
                 len(alive))

    def node_lost(self, node: Node) -> None:
        """A node's ARI went away: its calls in flight are reconciled when it
        comes back, or end `failed` (and are retried per their message) if it
        is not back within AMIVONO_GATEWAY_LOST_SECONDS."""
        calls = [c for c in self.calls.values() if c.gateway == node.name]
        if not calls:
            return
        log.warning("gateway %s: %d calls in flight wait up to %g s for it to come back",
                    node.name, len(calls), self.settings.gateway_lost_seconds)
        task = asyncio.get_running_loop().create_task(self._lost_timer(node, calls))
        self._lost_timers.add(task)
        task.add_done_callback(self._lost_timers.discard)

    async def _lost_timer(self, node: Node, calls: list[Call]) -> None:
        try:
            await asyncio.wait_for(node.ari.connected.wait(), self.settings.gateway_lost_seconds)
            return  # back: reconcile() ends the calls whose channels are gone
        except TimeoutError:
            pass
        for call in calls:
            call.finish(CallEnd(
                "failed", None, "gateway lost",
                f"gateway {node.name} lost for {self.settings.gateway_lost_seconds:g} s "
                "during the call: its end is unknown", True))

    # --- cancellation -------------------------------------------------------

    def cancel_requested(self, payload: str | None) -> None:
        if payload is None or not payload.isdigit():
            return
        call = self.calls.get(channel_id_for(int(payload)))
        if call is not None and not call.canceled:
            call.canceled = True
            asyncio.get_running_loop().create_task(self._hangup(call))

    async def maintain(self) -> None:
        """The fallback for a lost NOTIFY: ask the database about our calls."""
        if not self.calls:
            return
        ids = [c.attempt_id for c in self.calls.values()]
        try:
            canceled = await queries.voice_messages.canceled_among(self.pool, attempt_ids=ids)
        except OUTAGE:
            return
        for attempt_id in canceled:
            self.cancel_requested(str(attempt_id))
