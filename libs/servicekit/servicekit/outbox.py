"""Transactional outbox: rows written with the state change, published after commit.

The fast path publishes right after the caller's commit; a relay loop publishes anything
left behind by a crash between commit and publish. Publishing is at-least-once; consumers
dedupe by message id.
"""

from __future__ import annotations

import asyncio
import logging
import time

import sqlalchemy as sa
from faststream.rabbit import RabbitBroker
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts import BY_TYPE, Contract

from .messaging import EVENTS, amqp_properties

logger = logging.getLogger("servicekit.outbox")


class Outbox:
    def __init__(self, table: sa.Table, engine: AsyncEngine, broker: RabbitBroker) -> None:
        self.table = table
        self.engine = engine
        self.broker = broker
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._parked: dict[int, float] = {}  # row id -> monotonic time before which it is not retried
        self._tries: dict[int, int] = {}

    async def add(self, conn: AsyncConnection, *messages: Contract) -> None:
        """Stage messages inside the caller's transaction (idempotent on message id)."""
        if not messages:
            return
        rows = [
            {
                "message_id": m.envelope.message_id,
                "message_type": m.envelope.message_type,
                "routing_key": m.routing_key,
                "body": m.model_dump(mode="json"),
            }
            for m in messages
        ]
        await conn.execute(insert(self.table).values(rows).on_conflict_do_nothing(index_elements=["message_id"]))

    async def publish_now(self, *messages: Contract) -> None:
        """After commit: publish these messages and mark them sent; failures are left to the relay."""
        try:
            for m in messages:
                await self.broker.publish(
                    m.model_dump(mode="json"), exchange=EVENTS, routing_key=m.routing_key, **amqp_properties(m)
                )
        except Exception:
            logger.warning("outbox fast path failed; relay will retry", exc_info=True)
            self._wake.set()
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(self.table)
                .where(self.table.c.message_id.in_([m.envelope.message_id for m in messages]))
                .values(published_at=sa.func.now())
            )

    async def relay_once(self, batch: int = 100, min_age_s: float = 2.0) -> int:
        """Publish unsent rows older than `min_age_s` (so the fast path owns fresh rows).

        Rows are published one by one: a row the broker refuses (unroutable, say) is parked
        with an exponential back-off in this process and logged, and the rows behind it still
        go out. Returns how many rows were published.
        """
        now = time.monotonic()
        parked = [row_id for row_id, until in self._parked.items() if until > now]
        async with self._lock, self.engine.begin() as conn:
            t = self.table
            query = (
                sa.select(t.c.id, t.c.routing_key, t.c.body)
                .where(t.c.published_at.is_(None))
                .where(t.c.created_at < sa.func.now() - sa.text(f"interval '{float(min_age_s)} seconds'"))
                .order_by(t.c.id)
                .limit(batch)
                .with_for_update(skip_locked=True)
            )
            if parked:
                query = query.where(t.c.id.not_in(parked))
            rows = (await conn.execute(query)).all()
            sent: list[int] = []
            for row in rows:
                try:
                    contract = BY_TYPE[row.body["envelope"]["message_type"]].model_validate(row.body)
                    await self.broker.publish(
                        row.body, exchange=EVENTS, routing_key=row.routing_key, **amqp_properties(contract)
                    )
                except Exception as exc:  # this row waits; the others go out
                    tries = self._tries.get(row.id, 0) + 1
                    self._tries[row.id] = tries
                    delay = min(2.0**tries, 300.0)
                    self._parked[row.id] = time.monotonic() + delay
                    logger.error("outbox row %s (%s) not published, retry in %.0fs: %r", row.id, row.routing_key,
                                 delay, exc)
                    continue
                sent.append(row.id)
                self._parked.pop(row.id, None)
                self._tries.pop(row.id, None)
            if sent:
                await conn.execute(sa.update(t).where(t.c.id.in_(sent)).values(published_at=sa.func.now()))
            return len(sent)

    async def run_relay(self, interval_s: float = 1.0) -> None:
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
