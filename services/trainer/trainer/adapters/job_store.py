"""The trainer's JobStore: `trainer.jobs` as a servicekit job queue, rows mapped to `Job`.

The queue (`servicekit.jobstore`) holds every lease rule; this file holds only the trainer's own
columns. Built on `PostgresJobQueue` in the service and on the shared fake in unit tests.
"""

from __future__ import annotations

from typing import Any

from contracts import TrainingCompleted, TrainingFailed, TrainingRequested
from servicekit.jobstore import JobQueue, Row

from .. import SCHEMA
from ..domain import Job, JobStatus

TABLE, KEY = f"{SCHEMA}.jobs", "job_id"


def job_of(row: Row) -> Job:
    return Job(
        job_id=row["job_id"], request=TrainingRequested.model_validate(row["request"]),
        status=JobStatus(row["status"]), attempts=row["attempts"], last_checkpoint_uri=row["last_checkpoint_uri"],
        last_checkpoint_step=row["last_checkpoint_step"], last_error=row["last_error"],
        created_at=row["created_at"], started_at=row["started_at"],
    )


class TrainingJobStore:
    """Implements `ports.JobStore` on `queue`."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        # The lease writes that need none of this service's columns are the queue's own.
        self.start_attempt, self.release, self.counts = queue.start_attempt, queue.release, queue.counts

    async def accept(self, request: TrainingRequested) -> bool:
        return await self.queue.accept(
            request, request.job_id, dataset_id=request.dataset_id, base_model=request.base_model,
            train_uri=request.train_uri, val_uri=request.val_uri, last_checkpoint_uri=None,
            last_checkpoint_step=None,
        )

    async def claim(self, owner: str, ttl_s: float) -> Job | None:
        row = await self.queue.claim(owner, ttl_s)
        return job_of(row) if row is not None else None

    async def heartbeat(self, job_id: str, owner: str, ttl_s: float, progress: dict[str, Any] | None) -> bool:
        return await self.queue.heartbeat(job_id, owner, ttl_s, progress=progress)

    async def record_checkpoint(self, job_id: str, owner: str, step: int, uri: str) -> bool:
        return await self.queue.update(job_id, owner, last_checkpoint_uri=uri, last_checkpoint_step=step)

    async def complete(self, job_id: str, owner: str, *, adapter_uri: str, metrics: dict[str, float],
                       steps: int, event: TrainingCompleted) -> bool:
        return await self.queue.settle(job_id, owner, JobStatus.COMPLETED.value, [event], adapter_uri=adapter_uri,
                                       metrics=metrics, steps=steps)

    async def fail(self, job_id: str, owner: str, *, reason: str, event: TrainingFailed) -> bool:
        return await self.queue.settle(job_id, owner, JobStatus.FAILED.value, [event], last_error=reason)

