"""The run index on the hot path: asyncpg directly, set-based statements, group commit.

Every run costs a creation (run row + outbox row), one outcome write (from AgentRunFinished on
the durable events queue: the one writer) and, for polling clients, reads. Through SQLAlchemy's async layer one such transaction cost ~1 ms of CPU
(greenlet hop, pool checkout with pre-ping, BEGIN/COMMIT round trips); a single prepared
statement on an asyncpg connection costs ~0.15 ms. The writes go one step further: concurrent
creations, and concurrent outcome writes, share one statement and one commit
(`servicekit.batching.GroupCommit`; a lone caller is flushed at once, with the single-row
statement, and a failing batch is retried one by one). The statements keep the rules of the
rest of the code:

- the run rows and their outbox rows are written atomically (one statement with a
  data-modifying CTE is one transaction);
- an outcome is recorded once: only a run still queued is updated, and each caller gets the
  record back only when its own outcome was the one written;
- an outcome claims its message id in the inbox in the same statement as the update: a
  duplicate delivery claims nothing and so updates nothing; a first delivery is claimed even
  when the run was already finished;
- the run rows are locked in run id order before they are updated, so two batches that share
  runs (two replicas taking redeliveries) wait for each other and never deadlock.

The table shapes are the ones of `adapters/tables.py` (and the migration); the integration
tests run these statements against the migrated schema.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg

from contracts import Contract
from servicekit.batching import GroupCommit
from servicekit.db import AsyncpgPool
from servicekit.messagesql import MessageSql, OutboxRows, outbox_row

from .. import SCHEMA
from ..domain import NewFeedback, NewRun, RunFinish, RunRecord, TaggedRun
from . import tables as t

SQL = MessageSql(SCHEMA)
RUNS, FEEDBACK = (x.fullname for x in (t.runs, t.feedback))

_FIELDS = tuple(f.name for f in fields(RunRecord))
_COLUMNS = tuple(name for name in _FIELDS if name != "screening")  # screening lives in the request (below)
_SCREENING = "coalesce({r}request -> 'screening', '[]'::jsonb) AS screening"
_RUN_COLUMNS = ", ".join((*_COLUMNS, _SCREENING.format(r="")))
_RETURNED = ", ".join((*(f"r.{name}" for name in _COLUMNS), _SCREENING.format(r="r.")))

_STAGE = SQL.stage_one("$5", "$6", "$7", "$8")

# A lone caller's write (most of them at low load) is one row: the single-row statements are
# cheaper to run than the set-based ones, on both sides of the connection.
CREATE_RUN = f"""
WITH run AS (
    INSERT INTO {RUNS} (run_id, subject, status, request, created_at) VALUES ($1, $2, 'queued', $3, $4)
)
{_STAGE}"""

# JSON columns travel as JSON text (one json.dumps each, as the pool's jsonb codec would do).
CREATE_RUNS = f"""
WITH run AS (
    INSERT INTO {RUNS} (run_id, subject, status, request, created_at)
    SELECT run_id, subject, 'queued', request::jsonb, created_at
    FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS u(run_id, subject, request, created_at)
)
{SQL.stage_all(("$5", "$6", "$7", "$8"))}"""

REFUSE_RUN = f"""INSERT INTO {RUNS} (run_id, subject, status, request, created_at, completed_at, error_code, error)
VALUES ($1, $2, 'refused', $3, $4, $4, $5, $6)"""

GET_RUN = f"SELECT {_RUN_COLUMNS} FROM {RUNS} WHERE run_id = $1"

# Newest first; the tags filter is containment, which the partial GIN index serves (gateway_0002).
LIST_RUNS = f"""SELECT {_RUN_COLUMNS}, coalesce(request -> 'metadata', '{{}}'::jsonb) AS metadata FROM {RUNS}
WHERE ($1::text IS NULL OR subject = $1) AND ($2::jsonb = '{{}}'::jsonb OR (request ? 'metadata'
      AND request -> 'metadata' @> $2::jsonb))
ORDER BY created_at DESC LIMIT $3"""

# Runs the injection screen fired on: a message of the request (flagged or blocked, kept in the
# request by the gateway) or a tool result (the step's `screening`), newest first.
SCREENED_RUNS = f"""SELECT run_id, subject, status, created_at, model_version,
    coalesce(request -> 'screening', '[]'::jsonb) AS screening,
    coalesce((SELECT jsonb_agg(s ORDER BY (s ->> 'index')::int) FROM jsonb_array_elements(steps) AS s
              WHERE jsonb_typeof(s -> 'screening') = 'object'), '[]'::jsonb) AS screened_steps
FROM {RUNS}
WHERE created_at >= $1 AND (request ? 'screening'
      OR jsonb_path_exists(coalesce(steps, '[]'::jsonb), '$[*].screening ? (@.type() == "object")'))
ORDER BY created_at DESC LIMIT $2"""

# The runner's record of the request's screening (the gateway's flags and its own on the client's
# tool messages) replaces the gateway's when it has any.
_SCREENED = """CASE WHEN jsonb_array_length({v}) > 0 THEN jsonb_set({r}request, ARRAY['screening'], {v})
    ELSE {r}request END"""

_SET_OUTCOME = f"""UPDATE {RUNS} SET status = $2, outcome = $3, answer = $4, steps = $5, client_tool_calls = $6,
    usage = $7, model_version = $8, engine = $9, error_code = $10, error = $11, completed_at = $12,
    request = {_SCREENED.format(v="$15::jsonb", r="")}
WHERE run_id = $1 AND status = 'queued'"""

# The inbox claim and the update in one statement: a duplicate delivery claims nothing and so
# updates nothing; a first delivery is recorded even when the run was already finished.
FINISH_RUN_ONCE = f"""
WITH claim AS ({SQL.claim("$13", "$14")}
)
{_SET_OUTCOME} AND EXISTS (SELECT 1 FROM claim)
RETURNING {_RUN_COLUMNS}"""

_OUTCOMES_CLAIMED = """unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                  $8::text[], $9::text[], $10::text[], $11::text[], $12::timestamptz[], $13::text[], $14::text[],
                  $15::text[])
    WITH ORDINALITY AS u(run_id, status, outcome, answer, steps, client_tool_calls, usage, model_version, engine,
                         error_code, error, completed_at, message_id, message_type, screening, ord)"""

# Locks in run id order (LockRows sits above the sort); rows another transaction finished
# meanwhile are rechecked and left out.
_LOCKED = f"""locked AS (
    SELECT run_id FROM {RUNS} WHERE run_id = ANY($1::text[]) AND status = 'queued' ORDER BY run_id FOR UPDATE
)"""

_SET_OUTCOMES = f"""UPDATE {RUNS} AS r SET status = u.status, outcome = u.outcome, answer = u.answer,
    steps = u.steps::jsonb, client_tool_calls = u.client_tool_calls::jsonb, usage = u.usage::jsonb,
    model_version = u.model_version, engine = u.engine, error_code = u.error_code, error = u.error,
    completed_at = u.completed_at, request = {_SCREENED.format(v="u.screening::jsonb", r="r.")}
FROM {{source}} AS u
WHERE r.run_id = u.run_id AND r.status = 'queued' AND r.run_id IN (SELECT run_id FROM locked)"""

# One item per message id (the caller deduplicates). Every id is claimed in the inbox; of the
# claimed outcomes of one run the first submitted is the one written.
FINISH_RUNS_ONCE = f"""
WITH u AS (SELECT * FROM {_OUTCOMES_CLAIMED}),
claim AS ({SQL.claim_all("$13", "$14")}
),
winner AS (
    SELECT DISTINCT ON (u.run_id) u.* FROM u JOIN claim USING (message_id) ORDER BY u.run_id, u.ord
),
{_LOCKED}
{_SET_OUTCOMES.format(source="winner")}
RETURNING u.message_id, {_RETURNED}"""

ADD_FEEDBACK = f"""
WITH feedback AS (
    INSERT INTO {FEEDBACK} (feedback_id, run_id, subject, rating, corrected_answer, corrected_tool_calls, comment)
    VALUES ($1, $2, $3, $4, $9, $10, $11)
)
{_STAGE}"""


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    columns: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


def _outcome_row(f: RunFinish) -> tuple[Any, ...]:
    return (f.run_id, f.status, f.outcome, f.answer, _json(f.steps), _json(f.client_tool_calls), _json(f.usage),
            f.model_version, f.engine, f.error_code, f.error, f.completed_at)


def _outcome_tail(item: _Outcome, encode: Callable[[Any], Any]) -> tuple[Any, ...]:
    """The arguments after the outcome's columns: the inbox claim ($13, $14), the screening ($15)."""
    return item.message_id, item.message_type, encode(item.finish.screening)


def _single(f: RunFinish) -> tuple[Any, ...]:
    """The single-row statements' arguments (JSON columns through the pool's jsonb codec)."""
    return (f.run_id, f.status, f.outcome, f.answer, f.steps, f.client_tool_calls, f.usage, f.model_version,
            f.engine, f.error_code, f.error, f.completed_at)


def _record(row: asyncpg.Record) -> RunRecord:
    return RunRecord(**{name: row[name] for name in _FIELDS})


class _Outcome(NamedTuple):
    finish: RunFinish
    message_id: str | None
    message_type: str


class AsyncpgRunStore:
    """Implements `ports.RunStore`. `open()` at start-up, `close()` at shutdown (after the
    writes under way are flushed)."""

    def __init__(self, database_url: str, *, min_size: int = 0, max_size: int = 20, max_batch: int = 128,
                 on_flush: Callable[[str, int], None] | None = None) -> None:
        self.max_batch = max_batch
        self.on_flush = on_flush  # (batch name, items written in one statement)
        self._db = AsyncpgPool(database_url, what="the run index", min_size=min_size, max_size=max_size)
        self._creates: GroupCommit[tuple[NewRun, Contract], None] | None = None
        self._finishes: GroupCommit[_Outcome, RunRecord | None] | None = None

    async def open(self) -> None:
        await self._db.open()
        self._creates = self._group(self._create_batch, "create")
        self._finishes = self._group(self._finish_batch, "finish")

    def _group(self, flush: Callable[[Sequence[Any]], Awaitable[Sequence[Any]]], name: str) -> GroupCommit:
        report = self.on_flush
        return GroupCommit(flush, max_batch=self.max_batch, name=f"gateway.runs.{name}",
                           on_flush=(lambda size: report(name, size)) if report is not None else None)

    async def close(self) -> None:
        groups = [g for g in (self._creates, self._finishes) if g is not None]
        self._creates = self._finishes = None
        for group in groups:
            await group.close()
        await self._db.close()

    @property
    def db(self) -> AsyncpgPool:
        """The durable pool (the outbox's and the operator stores' too)."""
        return self._db

    @property
    def pool(self) -> asyncpg.Pool:
        return self._db.pool

    # ------------------------------------------------------------------ creation

    async def create(self, run: NewRun, message: Contract) -> None:
        if self._creates is None:
            raise RuntimeError("the run index is not open")
        await self._creates.submit((run, message))

    async def _create_batch(self, items: Sequence[tuple[NewRun, Contract]]) -> list[None]:
        if len(items) == 1:
            run, message = items[0]
            await self.pool.execute(CREATE_RUN, run.run_id, run.subject, run.request, run.created_at,
                                    *outbox_row(message))
            return [None]
        runs = _columns([(r.run_id, r.subject, json.dumps(r.request), r.created_at) for r, _ in items], 4)
        staged = OutboxRows.of([message for _, message in items])
        await self.pool.execute(CREATE_RUNS, *runs, *staged)
        return [None] * len(items)

    async def refuse(self, run: NewRun, error_code: str, error: str) -> None:
        """A rare write (a refusal): one statement of its own, no outbox row (nothing was published)."""
        await self.pool.execute(REFUSE_RUN, run.run_id, run.subject, run.request, run.created_at, error_code, error)

    # ------------------------------------------------------------------ reads

    async def get(self, run_id: str) -> RunRecord | None:
        row = await self.pool.fetchrow(GET_RUN, run_id)
        return RunRecord(**row) if row is not None else None

    async def list(self, subject: str | None, metadata: dict[str, str], limit: int) -> list[TaggedRun]:
        rows = await self.pool.fetch(LIST_RUNS, subject, metadata, limit)
        return [TaggedRun(RunRecord(**{k: row[k] for k in _FIELDS}), row["metadata"]) for row in rows]

    async def screened(self, since: datetime, limit: int) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(SCREENED_RUNS, since, limit)
        return [dict(row) for row in rows]

    # ------------------------------------------------------------------ outcomes

    async def finish(self, finish: RunFinish, *, message_id: str, message_type: str) -> RunRecord | None:
        if self._finishes is None:
            raise RuntimeError("the run index is not open")
        return await self._finishes.submit(_Outcome(finish, message_id, message_type))

    async def _finish_batch(self, items: Sequence[_Outcome]) -> list[RunRecord | None]:
        """With an inbox claim: a message id delivered twice in a batch is claimed (and written)
        by its first delivery only; the later ones claim nothing, as after a commit."""
        if len(items) == 1:
            (item,) = items
            row = await self.pool.fetchrow(FINISH_RUN_ONCE, *_single(item.finish), *_outcome_tail(item, list))
            return [RunRecord(**row) if row is not None else None]
        first: dict[str, int] = {}
        for i, item in enumerate(items):
            first.setdefault(item.message_id, i)
        sent = [(*_outcome_row(items[i].finish), *_outcome_tail(items[i], json.dumps)) for i in first.values()]
        rows = await self.pool.fetch(FINISH_RUNS_ONCE, *_columns(sent, 15))
        written = {row["message_id"]: _record(row) for row in rows}
        return [written.get(item.message_id) if first[item.message_id] == i else None
                for i, item in enumerate(items)]

    # ------------------------------------------------------------------ outbox, feedback

    async def add_feedback(self, feedback: NewFeedback, message: Contract) -> None:
        await self.pool.execute(
            ADD_FEEDBACK, feedback.feedback_id, feedback.run_id, feedback.subject, feedback.rating,
            *outbox_row(message), feedback.corrected_answer, feedback.corrected_tool_calls, feedback.comment,
        )
