"""Take a TrainingCompleted in: one queued export job per training job, acked at once (an
export runs far longer than a delivery may stay unacked)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from contracts import TrainingCompleted
from servicekit.logs import log_fields
from servicekit.messaging import PermanentError

from ..domain import version_name
from ..metrics import ExporterMetrics
from ..ports import ExportJobStore

logger = logging.getLogger("exporter.accept")


class AcceptExport:
    def __init__(self, store: ExportJobStore, metrics: ExporterMetrics, on_queued: Callable[[], None]) -> None:
        self.store = store
        self.metrics = metrics
        self.on_queued = on_queued

    async def __call__(self, msg: TrainingCompleted) -> bool:
        """True when a job was queued; False for a duplicate (same message or same job id)."""
        env = msg.envelope
        if not msg.adapter_uri.startswith("s3://"):
            raise PermanentError(f"training job {msg.job_id}: adapter_uri {msg.adapter_uri!r} is not an s3:// URI")
        version = version_name(msg.base_model, msg.job_id)
        fields = log_fields(message_id=env.message_id, message_type=env.message_type, job_id=msg.job_id,
                            version=version)
        if not await self.store.accept(msg, version):
            logger.info("duplicate delivery ignored", extra=fields)
            return False
        self.metrics.messages_received.labels(type=env.message_type).inc()
        logger.info("export job %s queued: adapter %s → %s", msg.job_id, msg.adapter_uri, version, extra=fields)
        self.on_queued()
        return True
