"""Take a TrainingRequested in: one queued job per job id (servicekit.jobs.JobIntake), acked at once."""

from __future__ import annotations

import logging
from collections.abc import Callable

from contracts import TrainingRequested
from servicekit.jobs import JobIntake

from ..metrics import TrainerMetrics
from ..ports import JobStore

logger = logging.getLogger("trainer.accept")


class AcceptTraining:
    def __init__(self, store: JobStore, metrics: TrainerMetrics, on_queued: Callable[[], None]) -> None:
        self.store = store
        self.intake = JobIntake(metrics.messages_received, on_queued, logger)

    async def __call__(self, msg: TrainingRequested) -> bool:
        """True when a job was queued; False for a duplicate (same message or same job id)."""
        return await self.intake.take(
            msg, self.store.accept(msg),
            f"training job {msg.job_id} queued (dataset {msg.dataset_id}, base {msg.base_model})", job_id=msg.job_id)
