"""A worker loop outlives its failures: a database outage is waited out and
logged once when it starts and once when it ends; any other exception
restarts the loop, its traceback logged once."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from service.delivery.queue_worker import Job, QueueWorker, WorkerContext
from service.settings import Settings


class Failing(QueueWorker):
    """Claims that raise `errors` in turn, then stop the loop."""

    kind = "failing"
    restart_backoff = (0.001, 0.002)
    outage_backoff = (0.001, 0.002)

    def __init__(self, errors: list[BaseException], stop: asyncio.Event) -> None:
        ctx: Any = WorkerContext(Settings(), None, None, "unit")
        super().__init__(ctx, capacity=1, rate=0.0)
        self.errors = errors
        self.stop = stop
        self.claims = 0

    def ready(self) -> bool:
        return True

    async def claim(self, limit: int) -> tuple[int, list[Job]]:
        self.claims += 1
        if self.errors:
            raise self.errors.pop(0)
        self.stop.set()
        return 0, []

    async def seconds_until_due(self) -> float | None:
        return None


async def run(errors: list[BaseException]) -> Failing:
    stop = asyncio.Event()
    worker = Failing(errors, stop)
    await asyncio.wait_for(worker.loop(stop), 5)
    return worker


async def test_an_unexpected_exception_restarts_the_loop_with_one_traceback(caplog):
    caplog.set_level(logging.WARNING)
    worker = await run([RuntimeError("a bug"), RuntimeError("a bug"), KeyError("x")])
    assert worker.claims == 4  # three failures, then the loop ran on
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert [str(r.exc_info[1]) for r in tracebacks if r.exc_info] == ["a bug", "'x'"]
    assert sum("failed again" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("error", [ConnectionRefusedError(111, "refused"), OSError("reset")])
async def test_a_database_outage_is_logged_once_when_it_starts_and_ends(caplog, error):
    caplog.set_level(logging.WARNING)
    worker = await run([error] * 5)
    assert worker.claims == 6
    lines = [r.getMessage() for r in caplog.records]
    assert sum("database unavailable" in line for line in lines) == 1, lines
    assert sum("database back" in line for line in lines) == 1, lines
    assert not any(r.exc_info for r in caplog.records)
