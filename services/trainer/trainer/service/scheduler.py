"""The job loop of one trainer instance: claim a runnable job under a lease, run it, repeat.

One training at a time per instance (a training uses every core it is given). Jobs live in
Postgres, not in the broker: the request was acked when its job was queued, and any instance can
claim a queued job or one whose lease expired (its trainer died), which then resumes from its last
checkpoint.
"""

from __future__ import annotations

import asyncio
import logging

from ..metrics import TrainerMetrics
from ..ports import JobStore
from .run_job import RunTrainingJob

logger = logging.getLogger("trainer.scheduler")


class TrainingScheduler:
    def __init__(self, store: JobStore, run_job: RunTrainingJob, metrics: TrainerMetrics, *, owner: str,
                 lease_ttl_s: float, poll_interval_s: float, retry_delay_s: float) -> None:
        self.store = store
        self.run_job = run_job
        self.metrics = metrics
        self.owner = owner
        self.lease_ttl_s = lease_ttl_s
        self.poll_interval_s = poll_interval_s
        self.retry_delay_s = retry_delay_s
        self._wake = asyncio.Event()

    def poke(self) -> None:
        """A job was queued: look now rather than at the next poll."""
        self._wake.set()

    async def run_once(self) -> str | None:
        """Claim one runnable job and run it; None when there is none."""
        job = await self.store.claim(self.owner, self.lease_ttl_s)
        if job is None:
            return None
        logger.info("claimed job %s (attempts so far %d%s)", job.job_id, job.attempts,
                    f", last checkpoint at step {job.last_checkpoint_step}" if job.last_checkpoint_uri else "")
        return await self.run_job(job)

    async def run(self) -> None:
        """Background task of the service: runs until cancelled."""
        while True:
            self._wake.clear()
            try:
                outcome = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # Postgres or S3 away: the lease (if any) expires and the job is retried
                logger.warning("training job loop failed; retrying in %.0fs", self.retry_delay_s, exc_info=True)
                await asyncio.sleep(self.retry_delay_s)
                continue
            if outcome is None:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval_s)
                except TimeoutError:
                    pass

    async def refresh_counts(self) -> None:
        self.metrics.job_counts(await self.store.counts())

    async def run_gauges(self) -> None:
        """Background task: jobs-by-status gauges, every poll interval (training does not block it)."""
        while True:
            try:
                await self.refresh_counts()
            except asyncio.CancelledError:
                raise
            except Exception:  # the gauges stay stale until Postgres answers again
                logger.debug("job counts not refreshed", exc_info=True)
            await asyncio.sleep(max(self.poll_interval_s, 1.0))
