"""MinerStore on Postgres: inbox, interactions, feedback, counts, datasets and the outbox in the
`log_miner` schema. Writes go through asyncpg (the inbox/outbox statements are servicekit's);
the composed reads use SQLAlchemy Core."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import asyncpg
import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import ChatMessage, Contract, ToolCall, ToolSpec, TrajectoryStep
from contracts.learning import LabelQueue
from modelregistry import Canary, get_canary, running_canary
from servicekit.outbox import Outbox

from ..domain.canary import Arm
from ..domain.labeling import FAILURE_ORDER, candidate
from ..domain.policy import PolicyStats
from ..domain.records import Feedback, Run, RunWithFeedback
from ..domain.taxonomy import SUCCESS, Classification
from ..ports import DatasetRow, StoredRun
from . import tables as t
from .asyncpg_interactions import COUNTS, FEEDBACK, FEEDBACK_FOR, INTERACTIONS, feedback_of

_MESSAGES = TypeAdapter(list[ChatMessage])
_TOOLS = TypeAdapter(list[ToolSpec])
_STEPS = TypeAdapter(list[TrajectoryStep])
_CALLS = TypeAdapter(list[ToolCall])
_SUCCESS = sorted(label.value for label in SUCCESS)


def _run(row: Any) -> Run:
    return Run(
        run_id=row.run_id, outcome=row.outcome, messages=_MESSAGES.validate_python(row.messages),
        tools=_TOOLS.validate_python(row.tools), steps=_STEPS.validate_python(row.steps),
        model_version=row.model_version, engine=row.engine, subject=row.subject, logged_at=row.logged_at,
        usage=row.usage or {}, confidence=row.confidence, screening=row.screening or [],
    )


def _earlier(conversations: dict[str, list[tuple[Any, str]]], row: Any) -> tuple[str, ...]:
    """The runs of `row`'s conversation logged before it, oldest first."""
    runs = sorted(conversations.get(row.conversation_id, []))
    return tuple(run_id for at, run_id in runs if run_id != row.run_id and at <= row.logged_at)


def _feedback(row: Any) -> Feedback:
    calls = _CALLS.validate_python(row.corrected_tool_calls) if row.corrected_tool_calls is not None else None
    return Feedback(
        feedback_id=row.feedback_id, run_id=row.run_id, rating=row.rating, corrected_answer=row.corrected_answer,
        corrected_tool_calls=calls, comment=row.comment, submitted_by=row.submitted_by, submitted_at=row.submitted_at,
    )


def _feedback_order() -> tuple:
    return (t.feedback.c.submitted_at, t.feedback.c.received_at, t.feedback.c.feedback_id)


class PostgresTx:
    """Implements `ports.MinerTx` on one asyncpg connection inside an open transaction."""

    def __init__(self, conn: asyncpg.Connection, outbox: Outbox) -> None:
        self.conn = conn
        self.outbox = outbox

    async def claim(self, message_id: str, message_type: str) -> bool:
        return await self.conn.fetchval(self.outbox.sql.claim(), message_id, message_type) is not None

    async def lock_run(self, run_id: str) -> None:
        await self.conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "log_miner.run:" + run_id)

    async def feedback_for(self, run_id: str) -> list[Feedback]:
        return [feedback_of(r) for r in await self.conn.fetch(FEEDBACK_FOR, [run_id])]

    async def stored_run(self, run_id: str) -> StoredRun | None:
        row = await self.conn.fetchrow(f"SELECT * FROM {INTERACTIONS} WHERE run_id = $1", run_id)
        if row is None:
            return None
        return StoredRun(_run(SimpleNamespace(**row)), row["label"], tuple(row["labels"]), row["example_kind"])

    async def update_classification(self, run_id: str, classification: Classification,
                                    example_kind: str | None) -> None:
        await self.conn.execute(
            f"""UPDATE {INTERACTIONS} SET label = $2, labels = $3, example_kind = $4, classified_at = now()
                WHERE run_id = $1""",
            run_id, classification.label.value, [lb.value for lb in classification.labels], example_kind,
        )

    async def insert_feedback(self, message_id: str, feedback: Feedback) -> bool:
        calls = ([c.model_dump(mode="json") for c in feedback.corrected_tool_calls]
                 if feedback.corrected_tool_calls is not None else None)
        row = await self.conn.fetchval(
            f"""INSERT INTO {FEEDBACK} (feedback_id, run_id, message_id, rating, corrected_answer,
                                        corrected_tool_calls, comment, submitted_by, submitted_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, coalesce($9, now()))
                ON CONFLICT (feedback_id) DO NOTHING RETURNING feedback_id""",
            feedback.feedback_id, feedback.run_id, message_id, feedback.rating, feedback.corrected_answer, calls,
            feedback.comment, feedback.submitted_by, feedback.submitted_at,
        )
        return row is not None

    async def move_count(self, model_version: str, old: str | None, new: str) -> None:
        # The two rows in label order, as the batched interaction path writes its count rows:
        # no transaction waits for a row while holding one the other waits for.
        if old is not None and old < new:
            await self._count(model_version, old, -1)
            await self._count(model_version, new, +1)
            return
        await self._count(model_version, new, +1)
        if old is not None:
            await self._count(model_version, old, -1)

    async def _count(self, model_version: str, label: str, delta: int) -> None:
        if delta < 0:
            await self.conn.execute(
                f"UPDATE {COUNTS} SET runs = runs + $3, updated_at = now() WHERE model_version = $1 AND label = $2",
                model_version, label, delta,
            )
            return
        await self.conn.execute(
            f"""INSERT INTO {COUNTS} AS c (model_version, label, runs) VALUES ($1, $2, $3)
                ON CONFLICT (model_version, label) DO UPDATE SET runs = c.runs + $3, updated_at = now()""",
            model_version, label, delta,
        )

    async def insert_dataset(self, row: DatasetRow) -> None:
        await self.conn.execute(
            f"""INSERT INTO {t.datasets.fullname} (dataset_id, version, train_uri, val_uri, manifest_uri, train_sha256,
                    val_sha256, counts, sources, source_run_ids, feedback_ids, trigger, request_id, requested_by, job_id)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)""",
            row.dataset_id, row.version, row.train_uri, row.val_uri, row.manifest_uri, row.train_sha256,
            row.val_sha256, row.counts, row.sources, row.source_run_ids, row.feedback_ids, row.trigger,
            row.request_id, row.requested_by, row.job_id,
        )

    async def stage(self, *messages: Contract) -> None:
        await self.outbox.add(self.conn, *messages)


class PostgresMinerStore:
    """The one-message-at-a-time writes (`transaction`) on asyncpg, beside the outbox on the same
    pool; the composed reads (mining, policy stats, the label queue) on SQLAlchemy Core."""

    def __init__(self, engine: AsyncEngine, outbox: Outbox) -> None:
        self.engine = engine
        self.outbox = outbox

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTx]:
        async with self.outbox.db.pool.acquire() as conn, conn.transaction():
            yield PostgresTx(conn, self.outbox)

    async def seen(self, message_id: str) -> bool:
        return bool(await self.outbox.db.pool.fetchval(self.outbox.sql.seen, message_id))

    async def mined_runs(self, since: datetime | None, batch: int) -> AsyncIterator[list[RunWithFeedback]]:
        c = t.interactions.c
        later = t.interactions.alias("later")
        continued = sa.exists().where(later.c.continues == c.run_id)  # mined from the conversation's last run
        query = sa.select(t.interactions).where(sa.or_(c.example_kind.is_not(None), c.label.in_(_SUCCESS)),
                                                ~continued)
        if since is not None:
            query = query.where(c.logged_at >= since)
        last: tuple[Any, str] | None = None
        while True:
            page = query
            if last is not None:
                page = page.where(sa.tuple_(c.received_at, c.run_id) > sa.tuple_(*last))
            async with self.engine.connect() as conn:
                rows = (await conn.execute(page.order_by(c.received_at, c.run_id).limit(batch))).all()
                if not rows:
                    return
                fb_rows = await conn.execute(
                    sa.select(t.feedback).where(t.feedback.c.run_id.in_([r.run_id for r in rows]))
                    .order_by(*_feedback_order())
                )
                feedback: dict[str, list[Feedback]] = {}
                for r in fb_rows:
                    feedback.setdefault(r.run_id, []).append(_feedback(r))
                conversations = {r.conversation_id for r in rows if r.conversation_id not in (None, r.run_id)}
                earlier: dict[str, list[tuple[Any, str]]] = {}
                if conversations:
                    for r in await conn.execute(sa.select(c.conversation_id, c.run_id, c.logged_at)
                                                .where(c.conversation_id.in_(conversations))):
                        earlier.setdefault(r.conversation_id, []).append((r.logged_at, r.run_id))
            yield [RunWithFeedback(_run(r), feedback.get(r.run_id, []), _earlier(earlier, r)) for r in rows]
            last = (rows[-1].received_at, rows[-1].run_id)

    async def dataset_files(self, version: int) -> dict[str, str] | None:
        d = t.datasets.c
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(d.train_uri, d.val_uri).where(d.version == version))).first()
        return None if row is None else {"train": row.train_uri, "val": row.val_uri}

    async def policy_stats(self, window_s: float) -> PolicyStats:
        c, d = t.interactions.c, t.datasets.c
        async with self.engine.connect() as conn:
            last_any, last_policy = (await conn.execute(sa.select(
                sa.func.max(d.created_at), sa.func.max(d.created_at).filter(d.trigger.like("policy:%"))
            ))).one()
            has_example = c.example_kind.is_not(None)
            fresh = has_example if last_any is None else sa.and_(has_example, c.classified_at > last_any)
            new_examples, available = (await conn.execute(
                sa.select(sa.func.count().filter(fresh), sa.func.count().filter(has_example))
            )).one()
            window_start = sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, float(window_s))
            runs, failures = (await conn.execute(sa.select(
                sa.func.count(), sa.func.count().filter(c.label.not_in(_SUCCESS))
            ).where(c.received_at > window_start))).one()
        return PolicyStats(new_examples=new_examples, available_examples=available, window_runs=runs,
                           window_failures=failures, last_policy_dataset_at=last_policy)

    async def label_queue(self, limit: int, model_version: str | None = None) -> LabelQueue:
        """The order of `domain.labeling`, in one statement for the head and one for the count."""
        c = t.interactions.c
        waiting = sa.and_(
            ~sa.exists().where(t.feedback.c.run_id == c.run_id),
            sa.or_(c.confidence < 1.0, c.label.not_in(_SUCCESS)),
        )
        if model_version is not None:
            waiting = sa.and_(waiting, c.model_version == model_version)
        failure_rank = sa.func.array_position(sa.literal(list(FAILURE_ORDER), ARRAY(sa.Text)), c.label)
        head = (sa.select(t.interactions).where(waiting)
                .order_by(c.confidence.asc().nulls_last(), failure_rank.asc().nulls_last(), c.received_at.desc(),
                          c.run_id)
                .limit(limit))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(head)).all()
            total = (await conn.execute(sa.select(sa.func.count()).select_from(t.interactions).where(waiting)))
        return LabelQueue(waiting=total.scalar_one(),
                          runs=[candidate(_run(r), r.label, tuple(r.labels)) for r in rows])

    async def next_version(self) -> int:
        async with self.engine.begin() as conn:
            return int((await conn.execute(sa.select(t.dataset_version_seq.next_value()))).scalar_one())

    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        async with self.engine.connect() as conn:
            key = sa.func.hashtext(name)
            got = bool((await conn.execute(sa.select(sa.func.pg_try_advisory_lock(key)))).scalar_one())
            await conn.commit()
            try:
                yield got
            finally:
                if got:
                    await conn.execute(sa.select(sa.func.pg_advisory_unlock(key)))
                    await conn.commit()

    async def publish(self, *messages: Contract) -> None:
        await self.outbox.publish_now(*messages)

    async def running_canary(self) -> Canary | None:
        return await running_canary(self.outbox.db.pool)

    async def canary(self, canary_id: str | None = None) -> Canary | None:
        return await get_canary(self.outbox.db.pool, canary_id)

    async def canary_arms(self, versions: Sequence[str], since: datetime) -> dict[str, Arm]:
        """Each version's live outcomes recorded since `since` (domain.canary)."""
        pool = self.outbox.db.pool
        rows = await pool.fetch(_CANARY_ARMS, list(versions), since, _SUCCESS)
        labels = await pool.fetch(_CANARY_LABELS, list(versions), since)
        by_label: dict[str, dict[str, int]] = {}
        for r in labels:
            by_label.setdefault(r["model_version"], {})[r["label"]] = r["runs"]
        arms = {v: Arm(v) for v in versions}
        for r in rows:
            v = r["model_version"]
            arms[v] = Arm(v, runs=r["runs"], call_runs=r["call_runs"], valid_call_runs=r["valid_call_runs"],
                          failures=r["failures"], negative_feedback=r["negative_feedback"],
                          median_ms=float(r["median_ms"]) if r["median_ms"] is not None else None,
                          labels=by_label.get(v, {}))
        return arms


_CALLED = "EXISTS (SELECT 1 FROM jsonb_array_elements(i.steps) s WHERE s->>'kind' = 'tool_call')"
_INVALID = ("EXISTS (SELECT 1 FROM jsonb_array_elements(i.steps) s "
            "WHERE s->>'kind' = 'tool_call' AND NOT COALESCE((s->>'valid')::boolean, true))")
_CANARY_ARMS = f"""
SELECT i.model_version, count(*) AS runs,
       count(*) FILTER (WHERE {_CALLED}) AS call_runs,
       count(*) FILTER (WHERE {_CALLED} AND NOT {_INVALID}) AS valid_call_runs,
       count(*) FILTER (WHERE NOT (i.label = ANY($3::text[]))) AS failures,
       count(*) FILTER (WHERE i.labels ? 'negative_feedback') AS negative_feedback,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY (i.usage->>'total_ms')::float) AS median_ms
FROM {t.interactions.fullname} i
WHERE i.model_version = ANY($1::text[]) AND i.logged_at >= $2
GROUP BY i.model_version
"""
_CANARY_LABELS = f"""
SELECT i.model_version, i.label, count(*) AS runs FROM {t.interactions.fullname} i
WHERE i.model_version = ANY($1::text[]) AND i.logged_at >= $2 GROUP BY i.model_version, i.label
"""
