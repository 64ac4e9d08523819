"""GroupCommit: one flush per round, results back to the right callers, failures isolated."""

from __future__ import annotations

import asyncio

import pytest

from servicekit.batching import GroupCommit


class Recorder:
    def __init__(self, delay: float = 0.0, poison: set[int] | None = None) -> None:
        self.batches: list[list[int]] = []
        self.delay = delay
        self.poison = poison or set()

    async def __call__(self, items):
        self.batches.append(list(items))
        await asyncio.sleep(self.delay)
        if self.poison & set(items):
            raise ValueError(f"poison in {list(items)}")
        return [i * 10 for i in items]


async def test_lone_caller_is_flushed_at_once() -> None:
    flush = Recorder()
    group = GroupCommit(flush)
    assert await asyncio.wait_for(group.submit(1), 1) == 10
    assert flush.batches == [[1]]


async def test_callers_arriving_during_a_flush_share_the_next_one() -> None:
    flush = Recorder(delay=0.05)
    sizes: list[int] = []
    group = GroupCommit(flush, on_flush=sizes.append)
    first = asyncio.create_task(group.submit(0))
    await asyncio.sleep(0.01)  # the first flush is under way
    rest = await asyncio.gather(*(group.submit(i) for i in range(1, 6)))
    assert await first == 0
    assert rest == [10, 20, 30, 40, 50]
    assert flush.batches == [[0], [1, 2, 3, 4, 5]]
    assert sizes == [1, 5]


async def test_max_batch_splits_rounds() -> None:
    flush = Recorder()
    group = GroupCommit(flush, max_batch=2)
    assert await asyncio.gather(*(group.submit(i) for i in range(5))) == [0, 10, 20, 30, 40]
    assert flush.batches == [[0, 1], [2, 3], [4]]


async def test_a_bad_item_fails_only_its_own_caller() -> None:
    flush = Recorder(poison={3})
    group = GroupCommit(flush)
    results = await asyncio.gather(*(group.submit(i) for i in range(5)), return_exceptions=True)
    assert results[:3] == [0, 10, 20] and results[4] == 40
    assert isinstance(results[3], ValueError)
    assert flush.batches[0] == [0, 1, 2, 3, 4]  # tried together first, then one by one
    assert [3] in flush.batches[1:]


async def test_wrong_result_count_is_an_error_not_a_misrouted_result() -> None:
    async def short(items):
        return [1]

    group = GroupCommit(short)
    results = await asyncio.gather(group.submit(1), group.submit(2), return_exceptions=True)
    assert results == [1, 1]  # the short batch failed; retried one by one, each got its own result


async def test_cancelled_caller_is_skipped() -> None:
    flush = Recorder(delay=0.05)
    group = GroupCommit(flush)
    first = asyncio.create_task(group.submit(0))
    await asyncio.sleep(0.01)
    doomed = asyncio.create_task(group.submit(1))
    kept = asyncio.create_task(group.submit(2))
    await asyncio.sleep(0)
    doomed.cancel()
    assert await first == 0 and await kept == 20
    assert flush.batches == [[0], [2]]
    await group.close()


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError):
        GroupCommit(Recorder(), max_batch=0)
