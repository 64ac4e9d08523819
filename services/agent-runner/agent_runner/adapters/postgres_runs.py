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

from contracts import Contract
from servicekit.db import AsyncpgPool
from servicekit.messaging import json_body
from servicekit.outbox import Outbox

from ..ports import RunRecord
from . import tables as t

logger = logging.getLogger("agent_runner.store")

INBOX, TRAJECTORIES, OUTBOX = (x.fullname for x in (t.inbox, t.trajectories, t.outbox))

IS_PROCESSED = f"SELECT EXISTS (SELECT 1 FROM {INBOX} WHERE message_id = $1)"

# $17-$20: the outbox rows as parallel arrays, whatever their number (bodies as JSON text).
RECORD = f"""
WITH claim AS (
    INSERT INTO {INBOX} (message_id, message_type) VALUES ($1, $2)
    ON CONFLICT (message_id) DO NOTHING RETURNING message_id
), run AS (
    INSERT INTO {TRAJECTORIES} (run_id, subject, outcome, answer, messages, tools, steps, options, usage,
                                model_version, engine, error, attempt, started_at)
    SELECT $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16 WHERE EXISTS (SELECT 1 FROM claim)
    ON CONFLICT (run_id) DO NOTHING RETURNING run_id
), staged AS (
    INSERT INTO {OUTBOX} (message_id, message_type, routing_key, body)
    SELECT message_id, message_type, routing_key, body::jsonb
    FROM unnest($17::text[], $18::text[], $19::text[], $20::text[]) AS m(message_id, message_type, routing_key, body)
    WHERE EXISTS (SELECT 1 FROM run)
    ON CONFLICT (message_id) DO NOTHING
)
SELECT EXISTS (SELECT 1 FROM claim) AS claimed, EXISTS (SELECT 1 FROM run) AS recorded"""

STORED_OUTCOME = f"SELECT body FROM {OUTBOX} WHERE message_id = $1"

MARK_PUBLISHED = f"UPDATE {OUTBOX} SET published_at = now() WHERE message_id = ANY($1::text[])"

_ROW = ("run_id", "subject", "outcome", "answer", "messages", "tools", "steps", "options", "usage",
        "model_version", "engine", "error", "attempt", "started_at")


class PostgresRunStore:
    """Implements `ports.RunStore`. `open()` at start-up, `close()` at shutdown; `outbox`
    publishes after commit (its marks go through `mark_published`)."""

    def __init__(self, database_url: str, *, max_size: int = 10) -> None:
        self.outbox: Outbox | None = None
        self._db = AsyncpgPool(database_url, what="the run store", max_size=max_size)
        self.open, self.close = self._db.open, self._db.close

    @property
    def pool(self) -> asyncpg.Pool:
        return self._db.pool

    async def is_processed(self, message_id: str) -> bool:
        return await self.pool.fetchval(IS_PROCESSED, message_id)

    async def record(self, record: RunRecord) -> bool:
        row = record.row
        staged = ([m.envelope.message_id for m in record.outbox], [m.envelope.message_type for m in record.outbox],
                  [m.routing_key for m in record.outbox], [json_body(m).decode() for m in record.outbox])
        result = await self.pool.fetchrow(RECORD, record.message_id, record.message_type,
                                          *(row[name] for name in _ROW), *staged)
        if result["claimed"] and not result["recorded"]:
            # Same run id under another message id (a re-sent request): the run is on record
            # already; its outcome messages were staged then, with the same deterministic ids.
            logger.warning("run %s already recorded under another message id", row["run_id"])
        return result["recorded"]

    async def stored_outcome(self, run_id: str, message_id: str) -> dict[str, Any] | None:
        return await self.pool.fetchval(STORED_OUTCOME, message_id)

    async def publish(self, *messages: Contract) -> None:
        assert self.outbox is not None, "the composition root sets the outbox"
        await self.outbox.publish_now(*messages)

    async def mark_published(self, message_ids: list[str]) -> None:
        """The outbox's marks of fast-path publishes (in batches)."""
        await self.pool.execute(MARK_PUBLISHED, message_ids)
