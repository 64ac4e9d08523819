"""EvaluationStore on Postgres (SQLAlchemy Core, asyncpg): evaluations, baseline scores, inbox, outbox.

Leases use the database clock (`now()`). Every write under a lease matches
`lease_owner = :owner AND status = 'running'`: an instance whose lease was taken over changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import Contract, ExportCompleted
from servicekit.db import Inbox
from servicekit.outbox import Outbox

from ..domain import RUNNABLE, EvaluationJob, EvaluationStatus
from ..ports import CachedScore
from .tables import baseline_scores, evaluations
from .tables import inbox as inbox_table

_RUNNABLE = [s.value for s in RUNNABLE]


def _interval(seconds: float) -> sa.ColumnElement:
    return sa.literal(timedelta(seconds=seconds), sa.Interval())


class PostgresEvaluationStore:
    def __init__(self, engine: AsyncEngine, outbox: Outbox) -> None:
        self.engine = engine
        self.outbox = outbox
        self.inbox = Inbox(inbox_table)

    def _leased(self, evaluation_id: str, owner: str) -> sa.ColumnElement[bool]:
        c = evaluations.c
        return sa.and_(c.evaluation_id == evaluation_id, c.lease_owner == owner,
                       c.status == EvaluationStatus.RUNNING.value)

    async def accept(self, evaluation_id: str, export: ExportCompleted) -> bool:
        env = export.envelope
        async with self.engine.begin() as conn:
            if not await self.inbox.claim(conn, env.message_id, env.message_type):
                return False
            row = await conn.execute(
                insert(evaluations)
                .values(evaluation_id=evaluation_id, message_id=env.message_id, correlation_id=env.correlation_id,
                        model_version=export.model_version, job_id=export.job_id,
                        request=export.model_dump(mode="json"), status=EvaluationStatus.QUEUED.value)
                .on_conflict_do_nothing()
                .returning(evaluations.c.evaluation_id)
            )
            return row.first() is not None

    async def claim(self, owner: str, ttl_s: float) -> EvaluationJob | None:
        c = evaluations.c
        free = sa.or_(c.lease_expires_at.is_(None), c.lease_expires_at < sa.func.now())
        candidate = (
            sa.select(c.evaluation_id).where(c.status.in_(_RUNNABLE), free)
            .order_by(c.created_at, c.evaluation_id).limit(1).with_for_update(skip_locked=True).scalar_subquery()
        )
        stmt = (
            sa.update(evaluations)
            .where(c.evaluation_id == candidate, c.status.in_(_RUNNABLE), free)
            .values(status=EvaluationStatus.RUNNING.value, lease_owner=owner,
                    lease_expires_at=sa.func.now() + _interval(ttl_s), updated_at=sa.func.now())
            .returning(c.evaluation_id, c.request, c.attempts, c.last_error, c.created_at)
        )
        async with self.engine.begin() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            return None
        return EvaluationJob(row.evaluation_id, ExportCompleted.model_validate(row.request), row.attempts,
                             row.last_error, row.created_at)

    async def _update(self, evaluation_id: str, owner: str, returning: sa.ColumnElement, **values: Any) -> Any:
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    sa.update(evaluations).where(self._leased(evaluation_id, owner))
                    .values(updated_at=sa.func.now(), **values).returning(returning)
                )
            ).first()
        return row[0] if row is not None else None

    async def heartbeat(self, evaluation_id: str, owner: str, ttl_s: float, progress: dict[str, Any] | None) -> bool:
        values: dict[str, Any] = {"lease_expires_at": sa.func.now() + _interval(ttl_s)}
        if progress is not None:
            values["progress"] = progress
        return await self._update(evaluation_id, owner, evaluations.c.evaluation_id, **values) is not None

    async def start_attempt(self, evaluation_id: str, owner: str) -> int | None:
        return await self._update(evaluation_id, owner, evaluations.c.attempts, attempts=evaluations.c.attempts + 1)

    async def release(self, evaluation_id: str, owner: str, *, error: str | None, retry_after_s: float,
                      refund_attempt: bool) -> bool:
        c = evaluations.c
        return await self._update(
            evaluation_id, owner, c.evaluation_id, lease_owner=None,
            lease_expires_at=sa.func.now() + _interval(retry_after_s) if retry_after_s > 0 else None,
            last_error=error if error is not None else c.last_error,
            attempts=sa.func.greatest(c.attempts - 1, 0) if refund_attempt else c.attempts,
        ) is not None

    async def finish(self, evaluation_id: str, owner: str, *, passed: bool, quantization: str | None,
                     report_uri: str | None, error: str | None, events: Sequence[Contract]) -> bool:
        status = EvaluationStatus.COMPLETED if report_uri is not None else EvaluationStatus.FAILED
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    sa.update(evaluations).where(self._leased(evaluation_id, owner))
                    .values(status=status.value, passed=passed, quantization=quantization, report_uri=report_uri,
                            last_error=error, lease_owner=None, lease_expires_at=None, updated_at=sa.func.now(),
                            finished_at=sa.func.now())
                    .returning(evaluations.c.evaluation_id)
                )
            ).first()
            if row is None:
                return False
            await self.outbox.add(conn, *events)
        return True

    async def publish(self, *events: Contract) -> None:
        await self.outbox.publish_now(*events)

    async def cached_scores(self, version: str, quantization: str, keys: Sequence[str]) -> dict[str, CachedScore]:
        b = baseline_scores.c
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(baseline_scores).where(b.model_version == version, b.quantization == quantization,
                                                 b.suite_key.in_(list(keys)))
            )
            return {r.suite_key: CachedScore(r.suite, r.suite_key, r.kind, r.score, r.per_category, r.details, r.items)
                    for r in rows}

    async def save_scores(self, version: str, quantization: str, scores: Sequence[CachedScore]) -> None:
        if not scores:
            return
        rows = [{"model_version": version, "quantization": quantization, "suite_key": s.key, "suite": s.suite,
                 "kind": s.kind, "score": s.score, "per_category": s.per_category, "details": s.details,
                 "items": s.items} for s in scores]
        async with self.engine.begin() as conn:
            await conn.execute(insert(baseline_scores).values(rows).on_conflict_do_nothing())

    async def counts(self) -> dict[str, int]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(evaluations.c.status, sa.func.count()).group_by(evaluations.c.status))
            return {status: n for status, n in rows}
