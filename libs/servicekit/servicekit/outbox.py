"""Transactional outbox: rows written with the state change, published after commit.

The fast path (`publish_now`) publishes right after the caller's commit: a call's messages go
out concurrently, their publisher confirms awaited together, and the published rows are marked
in batches by the background task (`run_relay`: one UPDATE per batch instead of a transaction
per call). The relay in the same task publishes anything left behind: a crash between commit
and publish, a refused publish, or a mark lost with its batch (rows are only relayed once they
are older than `min_age_s`, well above the mark interval). Publishing is at-least-once;
consumers dedupe by message id. The statements are `MessageSql`'s, on the service's asyncpg pool.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg
from faststream.rabbit import RabbitBroker
from prometheus_client import Gauge

from contracts import BY_TYPE, Contract

from .db import AsyncpgPool
from .messagesql import MessageSql, OutboxRows
from .messaging import EVENTS, amqp_properties, json_body

logger = logging.getLogger("servicekit.outbox")


class Outbox:
    """The outbox of `sql`'s schema on `db`. The fast path's marks are written in batches, each
    one UPDATE whose commit does not wait for the WAL flush (a lost mark only means a harmless
    republish)."""

    def __init__(self, db: AsyncpgPool, sql: MessageSql, broker: RabbitBroker, *, mark_interval_s: float = 0.1,
                 mark_batch: int = 500) -> None:
        self.db = db
        self.sql = sql
        self.broker = broker
        self.mark_interval_s = mark_interval_s
        self.mark_batch = mark_batch
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._parked: dict[int, float] = {}  # row id -> monotonic time before which it is not retried
        self._tries: dict[int, int] = {}
        self._unmarked: list[str] = []  # published by the fast path, not yet marked
        self._batch_full = asyncio.Event()
        self._marking = False  # the background task flushes marks (else publish_now marks at once)

    async def add(self, conn: asyncpg.Connection, *messages: Contract) -> None:
        """Stage messages inside the caller's transaction (idempotent on message id)."""
        if messages:
            await conn.execute(self.sql.stage_all(), *OutboxRows.of(messages))

    async def publish_now(self, *messages: Contract) -> None:
        """After commit: publish these messages and have them marked sent; failures are left to the relay.

        The messages are published concurrently (their confirms awaited together), so a call
        costs one confirm round trip, not one per message; a refused one does not hold back
        the others.
        """
        if not messages:
            return
        results = await asyncio.gather(*(self._publish(m) for m in messages), return_exceptions=True)
        sent = [m.envelope.message_id for m, error in zip(messages, results, strict=True) if error is None]
        failed = [error for error in results if error is not None]
        if failed:
            logger.warning("outbox fast path: %d of %d not published; the relay will retry", len(failed),
                           len(messages), exc_info=failed[0])
            self._wake.set()
        if not sent:
            return
        if not self._marking:
            await self.mark_published(sent)
            return
        self._unmarked.extend(sent)
        if len(self._unmarked) >= self.mark_batch:
            self._batch_full.set()

    async def _publish(self, message: Contract) -> None:
        await self.broker.publish(json_body(message), exchange=EVENTS, routing_key=message.routing_key,
                                  **amqp_properties(message))

    async def mark_published(self, message_ids: list[str]) -> None:
        async with self.db.pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = off")
            await conn.execute(self.sql.mark_published, message_ids)

    async def flush_marks(self) -> int:
        """Mark what the fast path published since the last flush; returns how many rows."""
        ids, self._unmarked = self._unmarked, []
        if ids:
            await self.mark_published(ids)
        return len(ids)

    async def relay_once(self, batch: int = 100, min_age_s: float = 2.0) -> int:
        """Publish unsent rows older than `min_age_s` (so the fast path owns fresh rows).

        Rows are published one by one: a row the broker refuses (unroutable, say) is parked
        with an exponential back-off in this process and logged, and the rows behind it still
        go out. Returns how many rows were published.
        """
        now = time.monotonic()
        parked = [row_id for row_id, until in self._parked.items() if until > now]
        async with self._lock, self.db.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(self.sql.pending, float(min_age_s), batch, parked)
            sent: list[int] = []
            for row in rows:
                row_id, body = row["id"], row["body"]
                try:
                    contract = BY_TYPE[body["envelope"]["message_type"]].model_validate(body)
                    await self.broker.publish(
                        body, exchange=EVENTS, routing_key=row["routing_key"], **amqp_properties(contract)
                    )
                except Exception as exc:  # this row waits; the others go out
                    tries = self._tries.get(row_id, 0) + 1
                    self._tries[row_id] = tries
                    delay = min(2.0**tries, 300.0)
                    self._parked[row_id] = time.monotonic() + delay
                    logger.error("outbox row %s (%s) not published, retry in %.0fs: %r", row_id, row["routing_key"],
                                 delay, exc)
                    continue
                sent.append(row_id)
                self._parked.pop(row_id, None)
                self._tries.pop(row_id, None)
            if sent:
                await conn.execute(self.sql.mark_rows, sent)
            return len(sent)

    async def backlog(self) -> tuple[int, float]:
        """Rows not yet published, and the age in seconds of the oldest (0 when none)."""
        row = await self.db.pool.fetchrow(self.sql.backlog)
        return int(row["pending"]), float(row["oldest_s"])

    async def run_backlog_gauges(self, pending: Gauge, oldest: Gauge, interval_s: float = 15.0) -> None:
        """Background task: the backlog into two gauges every `interval_s` (a failed read is logged
        and the gauges keep their last values; the service-down alert covers a dead database)."""
        while True:
            try:
                count, age = await self.backlog()
                pending.set(count)
                oldest.set(age)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("reading the outbox backlog failed", exc_info=True)
            await asyncio.sleep(interval_s)

    async def run_relay(self, interval_s: float = 1.0) -> None:
        """Background task of the outbox: marks the fast path's rows in batches and relays
        the rows left behind."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._run_marks())
            tasks.create_task(self._run_relay(interval_s))

    async def _run_marks(self) -> None:
        self._marking = True
        try:
            while True:
                try:
                    await asyncio.wait_for(self._batch_full.wait(), timeout=self.mark_interval_s)
                except TimeoutError:
                    pass
                self._batch_full.clear()
                try:
                    await self.flush_marks()
                except Exception:  # the relay covers unmarked rows; keep marking the next ones
                    logger.warning("marking published outbox rows failed", exc_info=True)
        finally:
            self._marking = False  # from now on publish_now marks at once
            try:
                await asyncio.shield(self.flush_marks())
            except Exception:
                logger.warning("final outbox mark failed; the relay will republish", exc_info=True)

    async def _run_relay(self, interval_s: float) -> None:
        while True:
            try:
                while await self.relay_once() > 0:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("outbox relay pass failed", exc_info=True)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=interval_s)
            except TimeoutError:
                pass
            self._wake.clear()
