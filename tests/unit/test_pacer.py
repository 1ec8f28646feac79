"""The Pacer spaces job starts to at most `rate` per second
(service/delivery/queue_worker.py). Its clock is injected: these tests run it
on a fake clock whose sleeps advance fake time, so they assert on exact gaps
and never on how long the machine took."""

from __future__ import annotations

import asyncio
import time

import pytest

from service.delivery import queue_worker
from service.delivery.queue_worker import Pacer

_real_sleep = asyncio.sleep


class FakeTime:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)
        await _real_sleep(0)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    t = FakeTime()
    # queue_worker calls asyncio.sleep through the module; only the Pacer sleeps here.
    monkeypatch.setattr(queue_worker.asyncio, "sleep", t.sleep)
    return t


async def starts(pacer: Pacer, fake: FakeTime, n: int) -> list[tuple[int, float]]:
    """Run `n` concurrent waiters; return (waiter, fake time it started), in start order."""
    started: list[tuple[int, float]] = []

    async def one(i: int) -> None:
        await pacer.wait()
        started.append((i, fake.now))

    await asyncio.gather(*(one(i) for i in range(n)))
    return started


async def test_concurrent_starts_are_spaced_one_gap_apart_in_order(fake: FakeTime) -> None:
    pacer = Pacer(10.0, clock=fake.clock)  # a gap of 0.1 s
    started = await starts(pacer, fake, 6)
    assert [i for i, _ in started] == list(range(6))  # first come, first started
    times = [t for _, t in started]
    assert times[0] == 1000.0  # the first does not wait
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps == pytest.approx([0.1] * 5)
    assert fake.sleeps == pytest.approx([0.1] * 5)


async def test_the_rate_sets_the_gap(fake: FakeTime) -> None:
    pacer = Pacer(200.0, clock=fake.clock)
    times = [t for _, t in await starts(pacer, fake, 4)]
    assert [b - a for a, b in zip(times, times[1:], strict=False)] == pytest.approx([0.005] * 3)


async def test_an_idle_pacer_starts_at_once_and_saves_no_burst(fake: FakeTime) -> None:
    pacer = Pacer(10.0, clock=fake.clock)
    await pacer.wait()
    fake.now += 60.0  # a minute with nothing to send
    await pacer.wait()
    assert fake.sleeps == []  # after idling, the next start is immediate
    await pacer.wait()  # but the idle minute is no credit for a burst
    assert fake.sleeps == pytest.approx([0.1])


async def test_a_start_after_part_of_the_gap_waits_only_the_rest(fake: FakeTime) -> None:
    pacer = Pacer(10.0, clock=fake.clock)
    await pacer.wait()
    fake.now += 0.04
    await pacer.wait()
    assert fake.sleeps == pytest.approx([0.06])


@pytest.mark.parametrize("rate", [0.0, -1.0])
async def test_no_rate_means_no_pacing(fake: FakeTime, rate: float) -> None:
    pacer = Pacer(rate, clock=fake.clock)
    started = await starts(pacer, fake, 20)
    assert fake.sleeps == [] and {t for _, t in started} == {1000.0}


async def test_real_clock_short_rate() -> None:
    # The default clock and real sleeps, at 500/s: only lower bounds are asserted
    # (a sleep never ends early), so a slow machine cannot fail it.
    pacer = Pacer(500.0)
    stamps: list[float] = []

    async def one() -> None:
        await pacer.wait()
        stamps.append(time.monotonic())

    await asyncio.gather(*(one() for _ in range(5)))
    assert stamps == sorted(stamps)
    assert stamps[-1] - stamps[0] >= 4 * 0.002 - 0.001
