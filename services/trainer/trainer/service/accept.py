"""Take a TrainingRequested in: one queued job per job id, then the delivery is acked at once
(training runs far longer than a broker delivery may stay unacked)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from contracts import TrainingRequested
from servicekit.logs import log_fields

from ..metrics import TrainerMetrics
from ..ports import JobStore

logger = logging.getLogger("trainer.accept")


class AcceptTraining:
    def __init__(self, store: JobStore, metrics: TrainerMetrics, on_queued: Callable[[], None]) -> None:
        self.store = store
        self.metrics = metrics
        self.on_queued = on_queued  # wakes the scheduler

    async def __call__(self, msg: TrainingRequested) -> bool:
        """True when a job was queued; False for a duplicate (same message or same job id)."""
        env = msg.envelope
        fields = log_fields(message_id=env.message_id, message_type=env.message_type, job_id=msg.job_id)
        if not await self.store.accept(msg):
            logger.info("duplicate delivery ignored", extra=fields)
            return False
        self.metrics.messages_received.labels(type=env.message_type).inc()
        logger.info("training job %s queued (dataset %s, base %s)", msg.job_id, msg.dataset_id, msg.base_model,
                    extra=fields)
        self.on_queued()
        return True
