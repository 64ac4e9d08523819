"""Group commit: concurrent callers share one round trip (one statement, one transaction).

Every consumer handles its prefetched deliveries concurrently, and each delivery used to pay
its own statement and commit. `GroupCommit` collects what the callers submit while a flush
is under way and writes it in the next flush, as Postgres does with WAL flushes: a lone
caller is flushed at once (no timer, no added latency), and under load the batch grows by
itself to whatever arrived during the previous round trip.

The flush function gets the items in submission order and returns one result per item. When
it raises, the batch is retried one item at a time, so a single bad item fails only its own
caller (whose message is then redelivered or dead-lettered as usual) and never its
neighbours'.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

logger = logging.getLogger("servicekit.batching")

Flush = Callable[[Sequence[T]], Awaitable[Sequence[R]]]


class GroupCommit(Generic[T, R]):
    def __init__(self, flush: Flush[T, R], *, max_batch: int = 128, name: str = "batch",
                 on_flush: Callable[[int], None] | None = None) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._flush = flush
        self.max_batch = max_batch
        self.name = name
        self._on_flush = on_flush  # e.g. a histogram of batch sizes
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Queue `item` for the next flush and wait for its own result (or exception)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain(), name=f"group-commit:{self.name}")
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
                live = [(item, fut) for item, fut in batch if not fut.cancelled()]
                if live:
                    await self._run(live)
        except BaseException as exc:  # cancelled (shutdown): nobody queued may wait forever
            pending, self._pending = self._pending, []
            for _, fut in pending:
                _settle(fut, exc=exc if isinstance(exc, Exception) else asyncio.CancelledError())
            raise

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._flush([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{self.name}: flush returned {len(results)} results for {len(batch)} items")
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc=exc)
                return
            logger.warning("%s: a batch of %d failed (%r); retrying one by one", self.name, len(batch), exc)
            for one in batch:
                await self._run([one])
            return
        except BaseException as exc:  # cancelled: nobody may wait forever
            for _, fut in batch:
                _settle(fut, exc=exc)
            raise
        if self._on_flush is not None:
            self._on_flush(len(batch))
        for (_, fut), result in zip(batch, results, strict=True):
            _settle(fut, result=result)

    async def close(self) -> None:
        """Wait for what was submitted to be flushed."""
        while self._worker is not None and not self._worker.done():
            await asyncio.shield(self._worker)


def _settle(fut: asyncio.Future, *, result: object = None, exc: BaseException | None = None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
