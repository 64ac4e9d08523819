"""The InteractionLogged hot path on a plain asyncpg pool: one transaction per batch of logged
runs, two set-based statements whatever the batch size (two more when runs have feedback).

Through SQLAlchemy's async layer the same work cost ~5 ms of CPU per run (six statements in
their own transaction); here a batch costs four round trips (BEGIN, claim and lock, insert and
count, COMMIT), and a run the encoding of its row. The statements keep the rules of
`postgres_store.PostgresTx`:

- the per-run lock is the same advisory key (`hashtext('log_miner.run:' || run_id)`), so the
  feedback path and the batch exclude each other on a run; a batch takes its keys in ascending
  order, so two batches (two replicas) cannot deadlock on them;
- the inbox rows and the count rows are written in key order (code points, as Python sorts, which
  the feedback path's `move_count` follows) for the same reason;
- the counts move only for runs that were inserted, in the statement that inserts them;
- the feedback is not read before the insert: the insert checks, under the locks, that each
  run has as many feedback rows as its classification took into account (none, mostly), and
  the use case classifies the runs it names stale again with their feedback.

The table shapes are those of `tables.py` (and the migration); the integration tests run these
statements against the migrated schema.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from pydantic import TypeAdapter

from contracts import ChatMessage, ToolCall, ToolSpec, TrajectoryStep
from servicekit.db import AsyncpgPool
from servicekit.messagesql import MessageSql

from .. import SCHEMA
from ..domain.conversations import prefix_keys, transcript_key
from ..domain.records import Feedback
from ..ports import NewInteraction
from . import tables as t

SQL = MessageSql(SCHEMA)
INTERACTIONS, FEEDBACK, COUNTS = (x.fullname for x in (t.interactions, t.feedback, t.taxonomy_counts))

_MESSAGES = TypeAdapter(list[ChatMessage])
_TOOLS = TypeAdapter(list[ToolSpec])
_STEPS = TypeAdapter(list[TrajectoryStep])
_CALLS = TypeAdapter(list[ToolCall])

# Locks first (the one-time filter), then the claims. A subquery with DISTINCT and ORDER BY
# is not flattened: the locks are taken in key order.
CLAIM = f"""
WITH claimed AS ({SQL.claim_all("$1", "$2")}
), locked AS (
    SELECT count(pg_advisory_xact_lock(key)) AS locks FROM (
        SELECT DISTINCT hashtext('log_miner.run:' || run_id) AS key FROM unnest($3::text[]) AS run_id ORDER BY key
    ) AS keys
)
SELECT message_id FROM claimed WHERE (SELECT locks FROM locked) IS NOT NULL"""

FEEDBACK_FOR = f"""SELECT feedback_id, run_id, rating, corrected_answer, corrected_tool_calls, comment, submitted_by,
    submitted_at
FROM {FEEDBACK} WHERE run_id = ANY($1::text[])
ORDER BY submitted_at, received_at, feedback_id"""

# Runs whose feedback is not what their classification took into account are left out and
# returned as stale (inserted = false). This statement's snapshot is taken after the locks
# were granted, so it sees all feedback on the runs that will ever precede the batch.
INSERT_INTERACTIONS = f"""
WITH batch AS (
    SELECT r.*, (SELECT count(*) FROM {FEEDBACK} AS f WHERE f.run_id = r.run_id) = r.feedback AS current
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::timestamptz[], $15::int[],
                $16::float8[], $17::text[], $18::text[], $19::text[], $20::text[])
         AS r(run_id, message_id, outcome, model_version, engine, subject, messages, tools, steps, usage, label,
              labels, example_kind, logged_at, feedback, confidence, transcript_key, prefix_keys, session_id,
              screening)
), inserted AS (
    INSERT INTO {INTERACTIONS} (run_id, message_id, outcome, model_version, engine, subject, messages, tools, steps,
                                usage, label, labels, example_kind, logged_at, confidence, transcript_key, continues,
                                session_id, conversation_id, screening)
    SELECT b.run_id, b.message_id, b.outcome, b.model_version, b.engine, b.subject, b.messages::jsonb,
           b.tools::jsonb, b.steps::jsonb, b.usage::jsonb, b.label, b.labels::jsonb, b.example_kind,
           coalesce(b.logged_at, now()), b.confidence, b.transcript_key, prev.run_id, b.session_id,
           coalesce(prev.conversation_id, prev.run_id, b.run_id), b.screening::jsonb
    FROM batch AS b
    LEFT JOIN LATERAL (  -- the run it continues: the latest of its session (the client's session_id tag),
        SELECT p.run_id, p.conversation_id FROM {INTERACTIONS} AS p  -- else whose whole transcript it begins with
        WHERE (CASE WHEN b.session_id IS NOT NULL
                    THEN p.session_id = b.session_id AND p.subject IS NOT DISTINCT FROM b.subject
                    ELSE p.transcript_key = ANY(b.prefix_keys::text[]) END) AND p.run_id <> b.run_id
        ORDER BY p.logged_at DESC LIMIT 1
    ) AS prev ON b.prefix_keys <> '{{}}' OR b.session_id IS NOT NULL
    WHERE b.current
    ON CONFLICT (run_id) DO NOTHING
    RETURNING message_id, model_version, label
), counted AS (
    INSERT INTO {COUNTS} AS c (model_version, label, runs)
    SELECT model_version, label, count(*) FROM inserted GROUP BY model_version, label
    ORDER BY model_version COLLATE "C", label COLLATE "C"
    ON CONFLICT (model_version, label) DO UPDATE SET runs = c.runs + excluded.runs, updated_at = now()
)
SELECT message_id, true AS inserted FROM inserted
UNION ALL
SELECT message_id, false FROM batch WHERE NOT current"""


def feedback_of(row: asyncpg.Record) -> Feedback:
    calls = row["corrected_tool_calls"]
    return Feedback(
        feedback_id=row["feedback_id"], run_id=row["run_id"], rating=row["rating"],
        corrected_answer=row["corrected_answer"],
        corrected_tool_calls=_CALLS.validate_python(calls) if calls is not None else None,
        comment=row["comment"], submitted_by=row["submitted_by"], submitted_at=row["submitted_at"],
    )


def _columns(rows: Sequence[NewInteraction]) -> list[list[Any]]:
    """The rows as one array per column, JSON columns as text (one pydantic-core pass each)."""
    columns: list[list[Any]] = [[] for _ in range(20)]
    for row in rows:
        run = row.run
        values = (
            run.run_id, row.message_id, run.outcome, run.model_version, run.engine, run.subject,
            _MESSAGES.dump_json(run.messages, exclude_none=True).decode(), _TOOLS.dump_json(run.tools).decode(),
            _STEPS.dump_json(run.steps).decode(), json.dumps(run.usage), row.label, json.dumps(list(row.labels)),
            row.example_kind, run.logged_at, row.feedback, run.confidence, transcript_key(run.messages),
            _array_literal(prefix_keys(run.messages)), run.session_id, json.dumps(run.screening),
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns


def _array_literal(keys: list[str]) -> str:
    """A text[] literal of hex keys (one text per row: unnest cannot take a ragged array)."""
    return "{" + ",".join(keys) + "}"


class AsyncpgBatch:
    """Implements `ports.InteractionBatch` on one connection inside an open transaction."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def claim(self, messages: Sequence[tuple[str, str, str]]) -> set[str]:
        unique = sorted({m: (k, r) for m, k, r in messages}.items())  # one row per id, in key order
        rows = await self.conn.fetch(CLAIM, [m for m, _ in unique], [k for _, (k, _) in unique],
                                     [r for _, (_, r) in unique])
        return {r["message_id"] for r in rows}

    async def feedback_for(self, run_ids: Sequence[str]) -> dict[str, list[Feedback]]:
        feedback: dict[str, list[Feedback]] = {}
        for row in await self.conn.fetch(FEEDBACK_FOR, list(run_ids)):
            feedback.setdefault(row["run_id"], []).append(feedback_of(row))
        return feedback

    async def insert_interactions(self, rows: Sequence[NewInteraction]) -> tuple[set[str], set[str]]:
        inserted: set[str] = set()
        stale: set[str] = set()
        if rows:
            for r in await self.conn.fetch(INSERT_INTERACTIONS, *_columns(rows)):
                (inserted if r["inserted"] else stale).add(r["message_id"])
        return inserted, stale


class AsyncpgInteractionLog:
    """Implements `ports.InteractionLog`. `open()` at start-up, `close()` at shutdown."""

    def __init__(self, database_url: str, *, max_size: int = 4) -> None:
        self._db = AsyncpgPool(database_url, what="the interaction log", max_size=max_size)
        self.open, self.close = self._db.open, self._db.close

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[AsyncpgBatch]:
        async with self._db.pool.acquire() as conn, conn.transaction():
            yield AsyncpgBatch(conn)
