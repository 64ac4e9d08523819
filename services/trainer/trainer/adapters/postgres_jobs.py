"""JobStore on Postgres (SQLAlchemy Core, asyncpg): `trainer.jobs`, the inbox and the outbox.

Leases use the database clock (`now()`), so instances with skewed clocks agree on expiry. Every
write made under a lease matches `lease_owner = :owner AND status = 'running'`: an instance whose
lease was taken over changes nothing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import TrainingCompleted, TrainingFailed, TrainingRequested
from servicekit.db import Inbox
from servicekit.outbox import Outbox

from ..domain import RUNNABLE, Job, JobStatus
from .tables import inbox as inbox_table
from .tables import jobs

_RUNNABLE = [s.value for s in RUNNABLE]


def _interval(seconds: float) -> sa.ColumnElement:
    return sa.literal(timedelta(seconds=seconds), sa.Interval())


def _job(row: Any) -> Job:
    return Job(
        job_id=row.job_id, request=TrainingRequested.model_validate(row.request), status=JobStatus(row.status),
        attempts=row.attempts, last_checkpoint_uri=row.last_checkpoint_uri,
        last_checkpoint_step=row.last_checkpoint_step, last_error=row.last_error, created_at=row.created_at,
        started_at=row.started_at,
    )


class PostgresJobStore:
    def __init__(self, engine: AsyncEngine, outbox: Outbox) -> None:
        self.engine = engine
        self.outbox = outbox
        self.inbox = Inbox(inbox_table)

    def _leased(self, job_id: str, owner: str) -> sa.ColumnElement[bool]:
        c = jobs.c
        return sa.and_(c.job_id == job_id, c.lease_owner == owner, c.status == JobStatus.RUNNING.value)

    async def accept(self, request: TrainingRequested) -> bool:
        env = request.envelope
        async with self.engine.begin() as conn:
            if not await self.inbox.claim(conn, env.message_id, env.message_type):
                return False
            row = await conn.execute(
                insert(jobs)
                .values(
                    job_id=request.job_id, message_id=env.message_id, correlation_id=env.correlation_id,
                    status=JobStatus.QUEUED.value, dataset_id=request.dataset_id, base_model=request.base_model,
                    train_uri=request.train_uri, val_uri=request.val_uri, request=request.model_dump(mode="json"),
                )
                .on_conflict_do_nothing(index_elements=["job_id"])
                .returning(jobs.c.job_id)
            )
            return row.first() is not None

    async def claim(self, owner: str, ttl_s: float) -> Job | None:
        c = jobs.c
        free = sa.or_(c.lease_expires_at.is_(None), c.lease_expires_at < sa.func.now())
        candidate = (
            sa.select(c.job_id)
            .where(c.status.in_(_RUNNABLE), free)
            .order_by(c.created_at, c.job_id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        stmt = (
            sa.update(jobs)
            .where(c.job_id == candidate, c.status.in_(_RUNNABLE), free)
            .values(
                status=JobStatus.RUNNING.value, lease_owner=owner, lease_expires_at=sa.func.now() + _interval(ttl_s),
                started_at=sa.func.coalesce(c.started_at, sa.func.now()), updated_at=sa.func.now(),
            )
            .returning(*jobs.c)
        )
        async with self.engine.begin() as conn:
            row = (await conn.execute(stmt)).first()
        return _job(row) if row is not None else None

    async def _update(self, job_id: str, owner: str, returning: sa.ColumnElement, **values: Any) -> Any:
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    sa.update(jobs).where(self._leased(job_id, owner))
                    .values(updated_at=sa.func.now(), **values).returning(returning)
                )
            ).first()
        return row[0] if row is not None else None

    async def heartbeat(self, job_id: str, owner: str, ttl_s: float, progress: dict[str, Any] | None) -> bool:
        values: dict[str, Any] = {"lease_expires_at": sa.func.now() + _interval(ttl_s)}
        if progress is not None:
            values["progress"] = progress
        return await self._update(job_id, owner, jobs.c.job_id, **values) is not None

    async def start_attempt(self, job_id: str, owner: str) -> int | None:
        return await self._update(job_id, owner, jobs.c.attempts, attempts=jobs.c.attempts + 1)

    async def record_checkpoint(self, job_id: str, owner: str, step: int, uri: str) -> bool:
        return await self._update(
            job_id, owner, jobs.c.job_id, last_checkpoint_uri=uri, last_checkpoint_step=step
        ) is not None

    async def release(self, job_id: str, owner: str, *, error: str | None, retry_after_s: float,
                      refund_attempt: bool) -> bool:
        c = jobs.c
        return await self._update(
            job_id, owner, c.job_id,
            lease_owner=None,
            lease_expires_at=sa.func.now() + _interval(retry_after_s) if retry_after_s > 0 else None,
            last_error=error if error is not None else c.last_error,
            attempts=sa.func.greatest(c.attempts - 1, 0) if refund_attempt else c.attempts,
        ) is not None

    async def _finish(self, job_id: str, owner: str, event: TrainingCompleted | TrainingFailed,
                      **values: Any) -> bool:
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    sa.update(jobs).where(self._leased(job_id, owner))
                    .values(lease_owner=None, lease_expires_at=None, updated_at=sa.func.now(),
                            finished_at=sa.func.now(), **values)
                    .returning(jobs.c.job_id)
                )
            ).first()
            if row is None:
                return False
            await self.outbox.add(conn, event)
        return True

    async def complete(self, job_id: str, owner: str, *, adapter_uri: str, metrics: dict[str, float],
                       steps: int, event: TrainingCompleted) -> bool:
        return await self._finish(job_id, owner, event, status=JobStatus.COMPLETED.value, adapter_uri=adapter_uri,
                                  metrics=metrics, steps=steps)

    async def fail(self, job_id: str, owner: str, *, reason: str, event: TrainingFailed) -> bool:
        return await self._finish(job_id, owner, event, status=JobStatus.FAILED.value, last_error=reason)

    async def publish(self, *events: TrainingCompleted | TrainingFailed) -> None:
        await self.outbox.publish_now(*events)

    async def counts(self) -> dict[str, int]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status))
            return {status: n for status, n in rows}
