"""RunStore on Postgres: inbox claim + trajectory row + outbox in one transaction."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import Contract
from servicekit.db import Inbox
from servicekit.outbox import Outbox

from ..ports import RunRecord
from . import tables

logger = logging.getLogger("agent_runner.store")


class PostgresRunStore:
    def __init__(self, engine: AsyncEngine, outbox: Outbox) -> None:
        self.engine = engine
        self.inbox = Inbox(tables.inbox)
        self.outbox = outbox

    async def is_processed(self, message_id: str) -> bool:
        async with self.engine.connect() as conn:
            return await self.inbox.seen(conn, message_id)

    async def record(self, record: RunRecord) -> bool:
        async with self.engine.begin() as conn:
            if not await self.inbox.claim(conn, record.message_id, record.message_type):
                return False
            inserted = await conn.execute(
                insert(tables.trajectories)
                .values(**record.row)
                .on_conflict_do_nothing(index_elements=["run_id"])
                .returning(tables.trajectories.c.run_id)
            )
            if inserted.first() is None:
                # Same run id under another message id (a re-sent request): the run is on record
                # already; its outcome messages were staged then, with the same deterministic ids.
                logger.warning("run %s already recorded under another message id", record.row["run_id"])
                return False
            await self.outbox.add(conn, *record.outbox)
        return True

    async def stored_outcome(self, run_id: str, message_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(tables.outbox.c.body).where(tables.outbox.c.message_id == message_id))
            ).first()
        return row.body if row else None

    async def publish(self, *messages: Contract) -> None:
        await self.outbox.publish_now(*messages)
