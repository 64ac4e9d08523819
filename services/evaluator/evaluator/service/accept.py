"""Take an export.completed in: one queued evaluation per message (servicekit.jobs.JobIntake), acked at once."""

from __future__ import annotations

import logging
from collections.abc import Callable

from contracts import ExportCompleted
from servicekit.jobs import JobIntake
from servicekit.messaging import PermanentError

from ..domain import BadExportError, evaluation_id_for, quant_ladder, quant_name
from ..metrics import EvaluatorMetrics
from ..ports import EvaluationStore

logger = logging.getLogger("evaluator.accept")


class AcceptExport:
    def __init__(self, store: EvaluationStore, metrics: EvaluatorMetrics, on_queued: Callable[[], None]) -> None:
        self.store = store
        self.intake = JobIntake(metrics.messages_received, on_queued, logger)

    async def __call__(self, msg: ExportCompleted) -> bool:
        """True when an evaluation was queued; False for a redelivery. PermanentError (dead letter)
        for an export without any GGUF."""
        try:
            ladder = quant_ladder(msg)
        except BadExportError as exc:
            raise PermanentError(str(exc)) from exc
        evaluation_id = evaluation_id_for(msg)
        return await self.intake.take(
            msg, self.store.accept(evaluation_id, msg),
            f"evaluation {evaluation_id} of {msg.model_version} queued (quants "
            f"{', '.join(quant_name(f) for f in ladder)})", model_version=msg.model_version)
