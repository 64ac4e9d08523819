"""The evaluation loop (servicekit.jobs): claim queued evaluations (or ones whose lease expired) and run
them, one at a time."""

from __future__ import annotations

import logging

from servicekit.jobs import JobScheduler

from ..domain import EvaluationJob
from ..metrics import EvaluatorMetrics
from ..ports import EvaluationStore
from .run_evaluation import RunEvaluation

logger = logging.getLogger("evaluator.scheduler")


def evaluation_scheduler(store: EvaluationStore, run: RunEvaluation, metrics: EvaluatorMetrics, *, owner: str,
                         lease_ttl_s: float, poll_interval_s: float,
                         retry_delay_s: float) -> JobScheduler[EvaluationJob]:
    return JobScheduler(store, run, metrics.counts, owner=owner, lease_ttl_s=lease_ttl_s,
                        poll_interval_s=poll_interval_s, retry_delay_s=retry_delay_s, what="evaluation",
                        describe=_describe, logger=logger)


def _describe(job: EvaluationJob) -> str:
    return f"evaluation {job.evaluation_id} of {job.export.model_version} (attempts so far {job.attempts})"
