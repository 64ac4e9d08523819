"""The run index on the hot path: asyncpg directly, one statement per use case.

Every run costs a creation (run row + outbox row), one or two outcome writes and, for polling
clients, reads. Through SQLAlchemy's async layer one such transaction cost ~1 ms of CPU
(greenlet hop, pool checkout with pre-ping, BEGIN/COMMIT round trips); a single prepared
statement on an asyncpg connection costs ~0.15 ms. The statements below keep the rules of the
rest of the code: the run row and its outbox row are written atomically (one statement with a
data-modifying CTE is one transaction), and an outcome from the events queue claims its
message id in the inbox in the same statement as the update. The table shapes are the ones of
`adapters/tables.py` (and the migration); the integration tests run these statements against
the migrated schema.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from contracts import Contract
from servicekit.db import asyncpg_pool
from servicekit.messaging import json_body

from ..domain import NewFeedback, NewRun, RunFinish, RunRecord
from . import tables as t

RUNS, OUTBOX, INBOX, FEEDBACK = (x.fullname for x in (t.runs, t.outbox, t.inbox, t.feedback))

_RUN_COLUMNS = ("run_id, subject, status, created_at, outcome, answer, steps, client_tool_calls, usage, "
                "model_version, engine, error_code, error, completed_at")

_STAGE = f"""INSERT INTO {OUTBOX} (message_id, message_type, routing_key, body)
    VALUES ($5, $6, $7, $8::text::jsonb) ON CONFLICT (message_id) DO NOTHING"""

CREATE_RUN = f"""
WITH run AS (
    INSERT INTO {RUNS} (run_id, subject, status, request, created_at) VALUES ($1, $2, 'queued', $3, $4)
)
{_STAGE}"""

GET_RUN = f"SELECT {_RUN_COLUMNS} FROM {RUNS} WHERE run_id = $1"

_SET_OUTCOME = f"""UPDATE {RUNS} SET status = $2, outcome = $3, answer = $4, steps = $5, client_tool_calls = $6,
    usage = $7, model_version = $8, engine = $9, error_code = $10, error = $11, completed_at = $12
WHERE run_id = $1 AND status = 'queued'"""

FINISH_RUN = f"{_SET_OUTCOME}\nRETURNING {_RUN_COLUMNS}"

# The inbox claim and the update in one statement: a duplicate delivery claims nothing and so
# updates nothing; a first delivery is recorded even when the run was already finished.
FINISH_RUN_ONCE = f"""
WITH claim AS (
    INSERT INTO {INBOX} (message_id, message_type) VALUES ($13, $14)
    ON CONFLICT (message_id) DO NOTHING RETURNING message_id
)
{_SET_OUTCOME} AND EXISTS (SELECT 1 FROM claim)
RETURNING {_RUN_COLUMNS}"""

MARK_PUBLISHED = f"UPDATE {OUTBOX} SET published_at = now() WHERE message_id = ANY($1::text[])"

ADD_FEEDBACK = f"""
WITH feedback AS (
    INSERT INTO {FEEDBACK} (feedback_id, run_id, subject, rating, corrected_answer, corrected_tool_calls, comment)
    VALUES ($1, $2, $3, $4, $9, $10, $11)
)
{_STAGE}"""


def _staged(message: Contract) -> tuple[Any, ...]:
    """Outbox columns; the body as JSON text (one pydantic-core pass, no dict dump + json.dumps)."""
    env = message.envelope
    return env.message_id, env.message_type, message.routing_key, json_body(message).decode()


def _outcome_args(f: RunFinish) -> tuple[Any, ...]:
    return (f.run_id, f.status, f.outcome, f.answer, f.steps, f.client_tool_calls, f.usage, f.model_version,
            f.engine, f.error_code, f.error, f.completed_at)


class AsyncpgRunStore:
    """Implements `ports.RunStore`. `open()` at start-up, `close()` at shutdown."""

    def __init__(self, database_url: str, *, min_size: int = 0, max_size: int = 20) -> None:
        self.database_url = database_url
        self.min_size = min_size
        self.max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._relaxed: asyncpg.Pool | None = None

    async def open(self) -> None:
        self._pool = await asyncpg_pool(self.database_url, min_size=self.min_size, max_size=self.max_size)
        # Writes that another durable write backs up commit without waiting for the WAL flush.
        self._relaxed = await asyncpg_pool(self.database_url, max_size=max(2, self.max_size // 4),
                                           synchronous_commit=False)

    async def close(self) -> None:
        for pool in (self._pool, self._relaxed):
            if pool is not None:
                await pool.close()
        self._pool = self._relaxed = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the run index is not open")
        return self._pool

    @property
    def relaxed_pool(self) -> asyncpg.Pool:
        if self._relaxed is None:
            raise RuntimeError("the run index is not open")
        return self._relaxed

    async def create(self, run: NewRun, message: Contract) -> None:
        await self.pool.execute(CREATE_RUN, run.run_id, run.subject, run.request, run.created_at, *_staged(message))

    async def get(self, run_id: str) -> RunRecord | None:
        row = await self.pool.fetchrow(GET_RUN, run_id)
        return RunRecord(**row) if row is not None else None

    async def finish(
        self, finish: RunFinish, *, message_id: str | None = None, message_type: str | None = None,
        durable: bool = True,
    ) -> RunRecord | None:
        args = _outcome_args(finish)
        if message_id is not None:
            query, args = FINISH_RUN_ONCE, (*args, message_id, message_type or "unknown")
        else:
            query = FINISH_RUN
        row = await (self.pool if durable else self.relaxed_pool).fetchrow(query, *args)
        return RunRecord(**row) if row is not None else None

    async def mark_published(self, message_ids: list[str]) -> None:
        """Outbox rows published by the fast path; a lost mark only means a harmless republish."""
        await self.relaxed_pool.execute(MARK_PUBLISHED, message_ids)

    async def add_feedback(self, feedback: NewFeedback, message: Contract) -> None:
        await self.pool.execute(
            ADD_FEEDBACK, feedback.feedback_id, feedback.run_id, feedback.subject, feedback.rating,
            *_staged(message), feedback.corrected_answer, feedback.corrected_tool_calls, feedback.comment,
        )
