"""Background task: claim queued evaluations (or ones whose lease expired) and run them, one at a time."""

from __future__ import annotations

import asyncio
import logging

from ..metrics import EvaluatorMetrics
from ..ports import EvaluationStore
from .run_evaluation import RunEvaluation

logger = logging.getLogger("evaluator.scheduler")


class EvaluationScheduler:
    def __init__(self, store: EvaluationStore, run: RunEvaluation, metrics: EvaluatorMetrics, *, owner: str,
                 lease_ttl_s: float, poll_interval_s: float, retry_delay_s: float) -> None:
        self.store = store
        self.run_evaluation = run
        self.metrics = metrics
        self.owner = owner
        self.lease_ttl_s = lease_ttl_s
        self.poll_interval_s = poll_interval_s
        self.retry_delay_s = retry_delay_s
        self._wake = asyncio.Event()

    def poke(self) -> None:
        """An evaluation was queued: look now rather than at the next poll."""
        self._wake.set()

    async def run_once(self) -> str | None:
        job = await self.store.claim(self.owner, self.lease_ttl_s)
        if job is None:
            return None
        logger.info("claimed evaluation %s of %s (attempts so far %d)", job.evaluation_id,
                    job.export.model_version, job.attempts)
        return await self.run_evaluation(job)

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                outcome = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # Postgres away: the lease (if any) expires and the evaluation is retried
                logger.warning("evaluation loop failed; retrying in %.0fs", self.retry_delay_s, exc_info=True)
                await asyncio.sleep(self.retry_delay_s)
                continue
            if outcome is None:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval_s)
                except TimeoutError:
                    pass

    async def run_gauges(self) -> None:
        """Background task: evaluations-by-status gauges."""
        while True:
            try:
                self.metrics.counts(await self.store.counts())
            except asyncio.CancelledError:
                raise
            except Exception:  # stale gauges until Postgres answers again
                logger.debug("evaluation counts not refreshed", exc_info=True)
            await asyncio.sleep(max(self.poll_interval_s, 1.0))
