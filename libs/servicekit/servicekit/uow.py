"""The unit of work of a message-driven write: claim the message in the inbox, do the work, stage
the resulting events in the outbox, all in one transaction; publish the staged events after commit.

    async with uow.begin(message) as tx:
        if not tx.fresh:
            return  # a duplicate delivery: nothing is written
        await tx.conn.execute(...)  # the work, on the same connection
        tx.stage(event)

A failure inside the block rolls everything back (the claim too, so a redelivery is worked
again). The events are published only when the block committed; a publish that fails is left
to the outbox relay. `begin()` without a message is a transaction with an outbox and no claim.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from faststream.rabbit import RabbitBroker

from contracts import Contract

from .db import AsyncpgPool
from .messagesql import MessageSql
from .outbox import Outbox


@dataclass
class Tx:
    conn: asyncpg.Connection
    fresh: bool  # the message was claimed now (always True without a message)
    staged: list[Contract] = field(default_factory=list)

    def stage(self, *events: Contract) -> None:
        """Written to the outbox with this transaction, published after its commit."""
        self.staged.extend(events)


class UnitOfWork:
    def __init__(self, db: AsyncpgPool, sql: MessageSql, outbox: Outbox) -> None:
        self.db = db
        self.sql = sql
        self.outbox = outbox

    @classmethod
    def of_schema(cls, db: AsyncpgPool, schema: str, broker: RabbitBroker, **outbox_options: Any) -> UnitOfWork:
        """The unit of work of a service schema, with its outbox (whose `run_relay` is a background task)."""
        sql = MessageSql(schema)
        return cls(db, sql, Outbox(db, sql, broker, **outbox_options))

    @asynccontextmanager
    async def begin(self, message: Contract | None = None, *, message_id: str | None = None,
                    message_type: str | None = None) -> AsyncIterator[Tx]:
        """Claims `message` (or `message_id`/`message_type`) first; `tx.fresh` says whether it was new."""
        if message is not None:
            message_id, message_type = message.envelope.message_id, message.envelope.message_type
        async with self.db.pool.acquire() as conn:
            async with conn.transaction():
                fresh = True
                if message_id is not None:
                    fresh = await conn.fetchval(self.sql.claim(), message_id, message_type) is not None
                tx = Tx(conn, fresh)
                yield tx
                await self.outbox.add(conn, *tx.staged)
        await self.outbox.publish_now(*tx.staged)

    async def seen(self, message_id: str) -> bool:
        """Whether the inbox holds `message_id` (a message consumed before)."""
        return bool(await self.db.pool.fetchval(self.sql.seen, message_id))
