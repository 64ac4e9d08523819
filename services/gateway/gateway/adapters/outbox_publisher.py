"""Publishing staged outbox messages on the hot path, with their rows marked in batches.

`servicekit.outbox.Outbox.publish_now` marks each published message in a transaction of its
own: one more commit (and WAL flush) per run. Here the marks are collected and written by a
background task in one asynchronously committed UPDATE per batch (`mark_published`). Nothing is lost by that: a
row left unmarked (crash, or a lost asynchronous commit) is republished by the outbox relay
once it is older than the relay's `min_age_s`, and every consumer dedupes by message id. The
flush interval stays well below that age so the relay never republishes in normal operation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from faststream.rabbit import RabbitBroker

from contracts import Contract
from servicekit.messaging import EVENTS, amqp_properties

logger = logging.getLogger("gateway.outbox")


class BatchedOutboxPublisher:
    def __init__(self, broker: RabbitBroker, mark_published: Callable[[list[str]], Awaitable[None]], *,
                 flush_interval_s: float = 0.1, max_batch: int = 500) -> None:
        self.broker = broker
        self.mark_published = mark_published
        self.flush_interval_s = flush_interval_s
        self.max_batch = max_batch
        self._published: list[str] = []
        self._full = asyncio.Event()

    async def publish_now(self, *messages: Contract) -> None:
        """After commit: publish; a failure is left to the relay (the rows stay unmarked)."""
        try:
            for m in messages:
                await self.broker.publish(
                    m.model_dump(mode="json"), exchange=EVENTS, routing_key=m.routing_key, **amqp_properties(m)
                )
        except Exception:
            logger.warning("outbox fast path failed; the relay will retry", exc_info=True)
            return
        self._published.extend(m.envelope.message_id for m in messages)
        if len(self._published) >= self.max_batch:
            self._full.set()

    async def flush(self) -> int:
        """Mark what was published since the last flush; returns how many rows."""
        ids, self._published = self._published, []
        if not ids:
            return 0
        await self.mark_published(ids)
        return len(ids)

    async def run(self) -> None:
        """Background task: flush marks every `flush_interval_s` (sooner when a batch is full)."""
        try:
            while True:
                try:
                    await asyncio.wait_for(self._full.wait(), timeout=self.flush_interval_s)
                except TimeoutError:
                    pass
                self._full.clear()
                try:
                    await self.flush()
                except Exception:  # the relay covers unmarked rows; keep marking the next ones
                    logger.warning("marking published outbox rows failed", exc_info=True)
        finally:
            try:
                await asyncio.shield(self.flush())
            except Exception:
                logger.warning("final outbox mark failed; the relay will republish", exc_info=True)
