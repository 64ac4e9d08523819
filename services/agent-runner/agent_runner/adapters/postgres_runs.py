"""RunStore on Postgres: inbox claim + trajectory row + outbox in one transaction.

Every run costs a duplicate check and the record; through SQLAlchemy's async layer they took
more CPU than a zero-cost run itself (greenlet hops, pool checkout with pre-ping, a round trip
per statement plus BEGIN/COMMIT). Here each is one statement on an asyncpg pool: the record is
a single statement with data-modifying CTEs, i.e. one transaction, in which the trajectory and
the outbox rows are written only when the inbox claim succeeded (a duplicate delivery writes
nothing) and the outbox rows only when the trajectory row is new. The table shapes are the ones
of `adapters/tables.py` (and the migration); the integration tests run these statements.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from faststream.rabbit import RabbitBroker

from contracts import Contract
from servicekit.db import AsyncpgPool
from servicekit.messagesql import MessageSql, OutboxRows
from servicekit.outbox import Outbox

from .. import SCHEMA
from ..ports import RunRecord
from . import tables as t

logger = logging.getLogger("agent_runner.store")

SQL = MessageSql(SCHEMA)
TRAJECTORIES = t.trajectories.fullname

# $17-$20: the outbox rows as parallel arrays, whatever their number (an `OutboxRows`).
RECORD = f"""
WITH claim AS ({SQL.claim("$1", "$2")}
), run AS (
    INSERT INTO {TRAJECTORIES} (run_id, subject, outcome, answer, messages, tools, steps, options, usage,
                                model_version, engine, error, attempt, started_at)
    SELECT $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16 WHERE EXISTS (SELECT 1 FROM claim)
    ON CONFLICT (run_id) DO NOTHING RETURNING run_id
), staged AS ({SQL.stage_all(("$17", "$18", "$19", "$20"), where="EXISTS (SELECT 1 FROM run)")}
)
SELECT EXISTS (SELECT 1 FROM claim) AS claimed, EXISTS (SELECT 1 FROM run) AS recorded"""

_ROW = ("run_id", "subject", "outcome", "answer", "messages", "tools", "steps", "options", "usage",
        "model_version", "engine", "error", "attempt", "started_at")


class PostgresRunStore:
    """Implements `ports.RunStore` on `db` (open from start-up to shutdown); `outbox` publishes
    after commit."""

    def __init__(self, db: AsyncpgPool, broker: RabbitBroker) -> None:
        self.db = db
        self.outbox = Outbox(db, SQL, broker)

    @property
    def pool(self) -> asyncpg.Pool:
        return self.db.pool

    async def is_processed(self, message_id: str) -> bool:
        return await self.pool.fetchval(SQL.seen, message_id)

    async def record(self, record: RunRecord) -> bool:
        row = record.row
        staged = OutboxRows.of(record.outbox)
        result = await self.pool.fetchrow(RECORD, record.message_id, record.message_type,
                                          *(row[name] for name in _ROW), *staged)
        if result["claimed"] and not result["recorded"]:
            # Same run id under another message id (a re-sent request): the run is on record
            # already; its outcome messages were staged then, with the same deterministic ids.
            logger.warning("run %s already recorded under another message id", row["run_id"])
        return result["recorded"]

    async def stored_outcome(self, run_id: str, message_id: str) -> dict[str, Any] | None:
        return await self.pool.fetchval(SQL.stored_body, message_id)

    async def publish(self, *messages: Contract) -> None:
        await self.outbox.publish_now(*messages)
