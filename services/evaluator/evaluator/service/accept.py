"""Take an export.completed in: one queued evaluation per message, then the delivery is acked at
once (an evaluation takes minutes; a delivery must not stay unacked that long)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from contracts import ExportCompleted
from servicekit.logs import log_fields
from servicekit.messaging import PermanentError

from ..domain import BadExportError, evaluation_id_for, quant_ladder, quant_name
from ..metrics import EvaluatorMetrics
from ..ports import EvaluationStore

logger = logging.getLogger("evaluator.accept")


class AcceptExport:
    def __init__(self, store: EvaluationStore, metrics: EvaluatorMetrics, on_queued: Callable[[], None]) -> None:
        self.store = store
        self.metrics = metrics
        self.on_queued = on_queued  # wakes the scheduler

    async def __call__(self, msg: ExportCompleted) -> bool:
        """True when an evaluation was queued; False for a redelivery. PermanentError (dead letter)
        for an export without any GGUF."""
        env = msg.envelope
        fields = log_fields(message_id=env.message_id, message_type=env.message_type, model_version=msg.model_version)
        try:
            ladder = quant_ladder(msg)
        except BadExportError as exc:
            raise PermanentError(str(exc)) from exc
        evaluation_id = evaluation_id_for(msg)
        if not await self.store.accept(evaluation_id, msg):
            logger.info("duplicate delivery ignored", extra=fields)
            return False
        self.metrics.messages_received.labels(type=env.message_type).inc()
        logger.info("evaluation %s of %s queued (quants %s)", evaluation_id, msg.model_version,
                    ", ".join(quant_name(f) for f in ladder), extra=fields)
        self.on_queued()
        return True
