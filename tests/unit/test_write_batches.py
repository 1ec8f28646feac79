"""WriteBatch (service/store/write_batches.py): what comes while a write
is in flight goes in the next write, and each caller gets its own result."""

from __future__ import annotations

import asyncio

import pytest

from service.store.write_batches import WriteBatch


class Recorder:
    """A write that holds until released and answers each item by rule."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.release = asyncio.Event()

    async def write(self, items: list[int]) -> list[int | BaseException]:
        self.calls.append(items)
        await self.release.wait()
        if -1 in items and len(items) == 1:
            raise RuntimeError("the whole write failed")
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]


async def test_what_comes_during_a_write_goes_in_the_next_one() -> None:
    rec = Recorder()
    batch: WriteBatch[int, int] = WriteBatch(rec.write)
    first = asyncio.create_task(batch.add(1))
    await asyncio.sleep(0)  # the first write starts with the first item alone
    rest = [asyncio.create_task(batch.add(i)) for i in range(2, 7)]
    await asyncio.sleep(0)
    rec.release.set()
    assert await first == 10
    assert await asyncio.gather(*rest) == [20, 30, 40, 50, 60]
    assert rec.calls == [[1], [2, 3, 4, 5, 6]]
    assert batch.writes == 2


async def test_a_batch_is_capped() -> None:
    rec = Recorder()
    rec.release.set()
    batch: WriteBatch[int, int] = WriteBatch(rec.write, limit=2)
    assert await asyncio.gather(*(batch.add(i) for i in range(5))) == [0, 10, 20, 30, 40]
    assert rec.calls == [[0, 1], [2, 3], [4]]


async def test_each_caller_gets_its_own_failure() -> None:
    rec = Recorder()
    rec.release.set()
    batch: WriteBatch[int, int] = WriteBatch(rec.write)
    results = await asyncio.gather(batch.add(1), batch.add(-2), batch.add(3),
                                   return_exceptions=True)
    assert results[0] == 10 and results[2] == 30
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad -2"


async def test_a_failed_write_fails_its_callers_and_the_next_write_runs() -> None:
    rec = Recorder()
    batch: WriteBatch[int, int] = WriteBatch(rec.write)
    doomed = asyncio.create_task(batch.add(-1))
    await asyncio.sleep(0)
    later = asyncio.create_task(batch.add(4))
    rec.release.set()
    with pytest.raises(RuntimeError, match="whole write"):
        await doomed
    assert await later == 40
