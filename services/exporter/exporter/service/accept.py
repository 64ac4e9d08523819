"""Take a TrainingCompleted in: one queued export job per training job (servicekit.jobs.JobIntake), acked at once."""

from __future__ import annotations

import logging
from collections.abc import Callable

from contracts import TrainingCompleted
from servicekit.jobs import JobIntake
from servicekit.messaging import PermanentError

from ..domain import version_name
from ..metrics import ExporterMetrics
from ..ports import ExportJobStore

logger = logging.getLogger("exporter.accept")


class AcceptExport:
    def __init__(self, store: ExportJobStore, metrics: ExporterMetrics, on_queued: Callable[[], None]) -> None:
        self.store = store
        self.intake = JobIntake(metrics.messages_received, on_queued, logger)

    async def __call__(self, msg: TrainingCompleted) -> bool:
        """True when a job was queued; False for a duplicate (same message or same job id)."""
        if not msg.adapter_uri.startswith("s3://"):
            raise PermanentError(f"training job {msg.job_id}: adapter_uri {msg.adapter_uri!r} is not an s3:// URI")
        version = version_name(msg.base_model, msg.job_id)
        return await self.intake.take(
            msg, self.store.accept(msg, version),
            f"export job {msg.job_id} queued: adapter {msg.adapter_uri} → {version}", job_id=msg.job_id,
            version=version)
