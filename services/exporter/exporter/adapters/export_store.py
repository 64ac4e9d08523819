"""The exporter's stores on Postgres: `exporter.export_jobs` as a servicekit job queue (rows mapped
to `ExportJob`), the candidate's registration in the transaction that completes its job, and the
alias moves (`Deployments`) as units of work.

The queue (`servicekit.jobstore`) holds every lease rule and the unit of work (`servicekit.uow`)
every inbox/outbox statement; the registry's statements are `modelregistry.write`'s. This file
holds only the exporter's own columns and the order of its writes.
"""

from __future__ import annotations

from typing import Any, Protocol

from contracts import ExportCompleted, ExportFailed, TrainingCompleted
from modelregistry import Canary, GateEvaluation, ModelVersion, get_aliases, get_canary, get_version
from modelregistry import write as registry
from modelregistry.write import AliasMove
from servicekit.jobstore import JobQueue, Row
from servicekit.uow import UnitOfWork

from .. import SCHEMA
from ..domain import ExportJob, JobStatus
from ..ports import Candidate, DeployedFactory, EndedFactory

TABLE, KEY = f"{SCHEMA}.export_jobs", "job_id"


def export_job_of(row: Row) -> ExportJob:
    return ExportJob(
        job_id=row["job_id"], version=row["version"], request=TrainingCompleted.model_validate(row["request"]),
        status=JobStatus(row["status"]), attempts=row["attempts"], last_error=row["last_error"],
        created_at=row["created_at"], started_at=row["started_at"],
    )


class Registrar(Protocol):
    async def register(self, conn: Any, candidate: Candidate) -> None:
        """Registers the candidate on `conn`, the transaction that completes its export job."""
        ...


class PostgresRegistrar:
    async def register(self, conn: Any, candidate: Candidate) -> None:
        await registry.register_candidate(
            conn, version=candidate.version, base_model=candidate.base_model, files=candidate.files,
            job_id=candidate.job_id, dataset_id=candidate.dataset_id, adapter_uri=candidate.adapter_uri,
            lineage=candidate.lineage, metrics=candidate.metrics, actor="exporter", cause="exported",
        )


class ExportStore:
    """Implements `ports.ExportJobStore` on `queue`, registering candidates through `registrar`."""

    def __init__(self, queue: JobQueue, registrar: Registrar) -> None:
        self.queue = queue
        # The lease writes that need none of this service's columns are the queue's own.
        self.start_attempt, self.release, self.counts = queue.start_attempt, queue.release, queue.counts
        self.registrar = registrar

    async def accept(self, msg: TrainingCompleted, version: str) -> bool:
        return await self.queue.accept(msg, msg.job_id, version=version)

    async def claim(self, owner: str, ttl_s: float) -> ExportJob | None:
        row = await self.queue.claim(owner, ttl_s)
        return export_job_of(row) if row is not None else None

    async def heartbeat(self, job_id: str, owner: str, ttl_s: float, stage: str | None,
                        progress: dict[str, Any] | None) -> bool:
        return await self.queue.heartbeat(job_id, owner, ttl_s, stage=stage, progress=progress)

    async def complete(self, job_id: str, owner: str, *, candidate: Candidate, result: dict[str, Any],
                       event: ExportCompleted) -> bool:
        async def register(conn: Any) -> None:
            await self.registrar.register(conn, candidate)

        return await self.queue.settle(job_id, owner, JobStatus.COMPLETED.value, [event], within=register,
                                       stage="registered", result=result)

    async def fail(self, job_id: str, owner: str, *, reason: str, event: ExportFailed) -> bool:
        return await self.queue.settle(job_id, owner, JobStatus.FAILED.value, [event], last_error=reason)

    async def last_finished(self) -> dict[str, Any] | None:
        row = await self.queue.latest_finished()
        if row is None:
            return None
        started, finished = row["started_at"], row["finished_at"]
        return {
            "job_id": row["job_id"], "version": row["version"], "status": row["status"], "attempts": row["attempts"],
            "error": row["last_error"], "finished_at": finished.isoformat(),
            "duration_s": round((finished - started).total_seconds(), 3) if started else None,
            "stage_seconds": (row.get("result") or {}).get("stage_seconds"),
        }


class PostgresDeployments:
    """Implements `ports.Deployments`: each move is a unit of work (inbox claim, the registry's
    write, ModelDeployed staged; published after commit)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def version(self, name: str) -> ModelVersion | None:
        async with self.uow.db.pool.acquire() as conn:
            return await get_version(conn, name)

    async def aliases(self) -> dict[str, str]:
        async with self.uow.db.pool.acquire() as conn:
            return await get_aliases(conn)

    async def canary(self, canary_id: str) -> Canary | None:
        async with self.uow.db.pool.acquire() as conn:
            return await get_canary(conn, canary_id)

    async def promote(self, message_id: str, message_type: str, version: str, *, cause: str, actor: str,
                      quantization: str | None, evaluation_id: str | None, reason: str,
                      deployed: DeployedFactory) -> AliasMove | None:
        async with self.uow.begin(message_id=message_id, message_type=message_type) as tx:
            if not tx.fresh:
                return None
            move = await registry.promote(tx.conn, version, cause=cause, actor=actor, quantization=quantization,
                                          evaluation_id=evaluation_id, reason=reason)
            if (event := deployed(move)) is not None:
                tx.stage(event)
            return move

    async def rollback(self, message_id: str, message_type: str, *, actor: str, reason: str,
                       deployed: DeployedFactory) -> AliasMove | None:
        async with self.uow.begin(message_id=message_id, message_type=message_type) as tx:
            if not tx.fresh:
                return None
            move = await registry.rollback(tx.conn, actor=actor, reason=reason)
            if (event := deployed(move)) is not None:
                tx.stage(event)
            return move

    async def start_canary(self, message_id: str, message_type: str, *, canary_id: str, version: str,
                           share_pct: float, mode: str, min_samples: int, max_duration_s: int, actor: str,
                           reason: str) -> Canary | None:
        async with self.uow.begin(message_id=message_id, message_type=message_type) as tx:
            if not tx.fresh:
                return None
            return await registry.start_canary(tx.conn, canary_id=canary_id, version=version, share_pct=share_pct,
                                               mode=mode, min_samples=min_samples, max_duration_s=max_duration_s,
                                               actor=actor, reason=reason)

    async def end_canary(self, message_id: str, message_type: str, canary_id: str, *, status: str, actor: str,
                         reason: str, report: dict[str, Any] | None, ended: EndedFactory,
                         deployed: DeployedFactory | None) -> tuple[Canary | None, AliasMove | None] | None:
        async with self.uow.begin(message_id=message_id, message_type=message_type) as tx:
            if not tx.fresh:
                return None
            canary = await registry.end_canary(tx.conn, canary_id, status=status, actor=actor, reason=reason,
                                               report=report)
            if canary is None:
                return None, None
            move = None
            if deployed is not None:
                move = await registry.promote(tx.conn, canary.version, cause="canary", actor=actor, reason=reason)
                if (event := deployed(move)) is not None:
                    tx.stage(event)
            tx.stage(ended(canary))
            return canary, move

    async def record_evaluation(self, message_id: str, message_type: str, version: str, evaluation: GateEvaluation,
                                *, reject_reason: str | None) -> ModelVersion | None:
        async with self.uow.begin(message_id=message_id, message_type=message_type) as tx:
            if not tx.fresh:
                return None
            # Reject first: it locks the alias rows before the version row, the order every alias move
            # takes, so a concurrent promotion of the same version cannot deadlock with this transaction.
            if reject_reason is not None:
                await registry.reject(tx.conn, version, actor="evaluator", cause="gate",
                                      evaluation_id=evaluation.evaluation_id, reason=reject_reason)
            return await registry.record_evaluation(tx.conn, version, evaluation)
