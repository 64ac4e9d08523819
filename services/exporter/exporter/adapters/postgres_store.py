"""ExportJobStore and Deployments on Postgres through one asyncpg pool: `exporter.export_jobs`,
the inbox, the outbox, and the registry writer (`modelregistry.write`), so a registration or an
alias move commits in the same transaction as its inbox claim and outbox row.

Leases use the database clock (`now()`). Every write under a lease matches
`lease_owner = $owner AND status = 'running'`: an instance whose lease was taken over changes nothing.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import asyncpg

from contracts import Contract, ExportCompleted, ExportFailed, TrainingCompleted
from modelregistry import GateEvaluation, ModelVersion, get_aliases, get_version
from modelregistry import write as registry
from modelregistry.write import AliasMove
from servicekit.db import AsyncpgPool
from servicekit.messaging import json_body
from servicekit.outbox import Outbox

from ..domain import ExportJob, JobStatus
from ..ports import Candidate, DeployedFactory
from .tables import INBOX, JOBS, OUTBOX

CLAIM_INBOX = f"""INSERT INTO {INBOX} (message_id, message_type) VALUES ($1, $2)
                  ON CONFLICT (message_id) DO NOTHING RETURNING message_id"""

STAGE_OUTBOX = f"""INSERT INTO {OUTBOX} (message_id, message_type, routing_key, body)
                   VALUES ($1, $2, $3, $4::text::jsonb) ON CONFLICT (message_id) DO NOTHING"""

MARK_PUBLISHED = f"UPDATE {OUTBOX} SET published_at = now() WHERE message_id = ANY($1::text[])"

LEASED = "job_id = $1 AND lease_owner = $2 AND status = 'running'"

CLAIM = f"""
UPDATE {JOBS} SET status = 'running', lease_owner = $1, lease_expires_at = now() + $2::interval,
                  started_at = COALESCE(started_at, now()), updated_at = now()
WHERE job_id = (
    SELECT job_id FROM {JOBS}
    WHERE status IN ('queued', 'running') AND (lease_expires_at IS NULL OR lease_expires_at < now())
    ORDER BY created_at, job_id LIMIT 1 FOR UPDATE SKIP LOCKED
)
RETURNING job_id, version, request, status, attempts, last_error, created_at, started_at"""


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _job(row: Any) -> ExportJob:
    return ExportJob(
        job_id=row["job_id"], version=row["version"],
        request=TrainingCompleted.model_validate(_json(row["request"])), status=JobStatus(row["status"]),
        attempts=row["attempts"], last_error=row["last_error"], created_at=row["created_at"],
        started_at=row["started_at"],
    )


async def stage(conn: asyncpg.Connection, *messages: Contract) -> None:
    for m in messages:
        await conn.execute(STAGE_OUTBOX, m.envelope.message_id, m.envelope.message_type, m.routing_key,
                           json_body(m).decode())


class PostgresExportStore:
    """Implements `ports.ExportJobStore` and `ports.Deployments`. `open()` at start-up, `close()`
    at shutdown; the composition root sets `outbox` (it publishes after commit)."""

    def __init__(self, database_url: str, *, max_size: int = 5) -> None:
        self.outbox: Outbox | None = None
        self._db = AsyncpgPool(database_url, what="the export store", max_size=max_size)
        self.open, self.close = self._db.open, self._db.close

    @property
    def pool(self) -> asyncpg.Pool:
        return self._db.pool

    # ---------------------------------------------------------------- export jobs

    async def accept(self, msg: TrainingCompleted, version: str) -> bool:
        env = msg.envelope
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(CLAIM_INBOX, env.message_id, env.message_type) is None:
                return False
            row = await conn.fetchval(
                f"""INSERT INTO {JOBS} (job_id, version, message_id, correlation_id, status, request)
                    VALUES ($1, $2, $3, $4, 'queued', $5::text::jsonb)
                    ON CONFLICT (job_id) DO NOTHING RETURNING job_id""",
                msg.job_id, version, env.message_id, env.correlation_id, json_body(msg).decode(),
            )
            return row is not None

    async def claim(self, owner: str, ttl_s: float) -> ExportJob | None:
        row = await self.pool.fetchrow(CLAIM, owner, timedelta(seconds=ttl_s))
        return _job(row) if row is not None else None

    async def heartbeat(self, job_id: str, owner: str, ttl_s: float, stage: str | None,
                        progress: dict[str, Any] | None) -> bool:
        row = await self.pool.fetchval(
            f"""UPDATE {JOBS} SET lease_expires_at = now() + $3::interval, stage = COALESCE($4, stage),
                       progress = COALESCE($5::text::jsonb, progress), updated_at = now()
                WHERE {LEASED} RETURNING job_id""",
            job_id, owner, timedelta(seconds=ttl_s), stage, json.dumps(progress) if progress is not None else None,
        )
        return row is not None

    async def start_attempt(self, job_id: str, owner: str) -> int | None:
        return await self.pool.fetchval(
            f"UPDATE {JOBS} SET attempts = attempts + 1, updated_at = now() WHERE {LEASED} RETURNING attempts",
            job_id, owner,
        )

    async def release(self, job_id: str, owner: str, *, error: str | None, retry_after_s: float,
                      refund_attempt: bool) -> bool:
        row = await self.pool.fetchval(
            f"""UPDATE {JOBS} SET lease_owner = NULL,
                       lease_expires_at = CASE WHEN $3::float8 > 0 THEN now() + make_interval(secs => $3) END,
                       last_error = COALESCE($4, last_error),
                       attempts = CASE WHEN $5 THEN greatest(attempts - 1, 0) ELSE attempts END, updated_at = now()
                WHERE {LEASED} RETURNING job_id""",
            job_id, owner, float(retry_after_s), error, refund_attempt,
        )
        return row is not None

    async def complete(self, job_id: str, owner: str, *, candidate: Candidate, result: dict[str, Any],
                       event: ExportCompleted) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchval(
                f"""UPDATE {JOBS} SET status = 'completed', lease_owner = NULL, lease_expires_at = NULL,
                           stage = 'registered', result = $3::text::jsonb, finished_at = now(), updated_at = now()
                    WHERE {LEASED} RETURNING job_id""",
                job_id, owner, json.dumps(result),
            )
            if row is None:
                return False
            await registry.register_candidate(
                conn, version=candidate.version, base_model=candidate.base_model, files=candidate.files,
                job_id=candidate.job_id, dataset_id=candidate.dataset_id, adapter_uri=candidate.adapter_uri,
                lineage=candidate.lineage, metrics=candidate.metrics, actor="exporter", cause="exported",
            )
            await stage(conn, event)
        return True

    async def fail(self, job_id: str, owner: str, *, reason: str, event: ExportFailed) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchval(
                f"""UPDATE {JOBS} SET status = 'failed', lease_owner = NULL, lease_expires_at = NULL,
                           last_error = $3, finished_at = now(), updated_at = now()
                    WHERE {LEASED} RETURNING job_id""",
                job_id, owner, reason,
            )
            if row is None:
                return False
            await stage(conn, event)
        return True

    async def publish(self, *events: Contract) -> None:
        assert self.outbox is not None, "the composition root sets the outbox"
        await self.outbox.publish_now(*events)

    async def mark_published(self, message_ids: list[str]) -> None:
        await self.pool.execute(MARK_PUBLISHED, message_ids)

    async def counts(self) -> dict[str, int]:
        rows = await self.pool.fetch(f"SELECT status, count(*) AS n FROM {JOBS} GROUP BY status")
        return {r["status"]: r["n"] for r in rows}

    async def last_finished(self) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(
            f"""SELECT job_id, version, status, attempts, last_error, result, started_at, finished_at FROM {JOBS}
                WHERE finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT 1"""
        )
        if row is None:
            return None
        result = _json(row["result"]) or {}
        return {
            "job_id": row["job_id"], "version": row["version"], "status": row["status"], "attempts": row["attempts"],
            "error": row["last_error"], "finished_at": row["finished_at"].isoformat(),
            "duration_s": round((row["finished_at"] - row["started_at"]).total_seconds(), 3)
            if row["started_at"] else None,
            "stage_seconds": result.get("stage_seconds"),
        }

    # ---------------------------------------------------------------- deployments

    async def version(self, name: str) -> ModelVersion | None:
        async with self.pool.acquire() as conn:
            return await get_version(conn, name)

    async def aliases(self) -> dict[str, str]:
        async with self.pool.acquire() as conn:
            return await get_aliases(conn)

    async def promote(self, message_id: str, message_type: str, version: str, *, cause: str, actor: str,
                      quantization: str | None, evaluation_id: str | None, reason: str,
                      deployed: DeployedFactory) -> AliasMove | None:
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(CLAIM_INBOX, message_id, message_type) is None:
                return None
            move = await registry.promote(conn, version, cause=cause, actor=actor, quantization=quantization,
                                          evaluation_id=evaluation_id, reason=reason)
            if (event := deployed(move)) is not None:
                await stage(conn, event)
            return move

    async def rollback(self, message_id: str, message_type: str, *, actor: str, reason: str,
                       deployed: DeployedFactory) -> AliasMove | None:
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(CLAIM_INBOX, message_id, message_type) is None:
                return None
            move = await registry.rollback(conn, actor=actor, reason=reason)
            if (event := deployed(move)) is not None:
                await stage(conn, event)
            return move

    async def record_evaluation(self, message_id: str, message_type: str, version: str, evaluation: GateEvaluation,
                                *, reject_reason: str | None) -> ModelVersion | None:
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(CLAIM_INBOX, message_id, message_type) is None:
                return None
            # Reject first: it locks the alias rows before the version row, the order every alias move
            # takes, so a concurrent promotion of the same version cannot deadlock with this transaction.
            if reject_reason is not None:
                await registry.reject(conn, version, actor="evaluator", cause="gate",
                                      evaluation_id=evaluation.evaluation_id, reason=reject_reason)
            return await registry.record_evaluation(conn, version, evaluation)
