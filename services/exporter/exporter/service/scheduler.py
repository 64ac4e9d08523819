"""The job loop of one exporter instance: claim a runnable export under a lease, run it, repeat.

One export at a time per instance (merging and quantizing use every core given). Jobs live in
Postgres: the TrainingCompleted was acked when its job was queued, and any instance can claim a
queued job or one whose lease expired (its exporter died); the export is then redone.
"""

from __future__ import annotations

import asyncio
import logging

from ..metrics import ExporterMetrics
from ..ports import ExportJobStore
from .run_export import RunExportJob

logger = logging.getLogger("exporter.scheduler")


class ExportScheduler:
    def __init__(self, store: ExportJobStore, run_job: RunExportJob, metrics: ExporterMetrics, *, owner: str,
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
        job = await self.store.claim(self.owner, self.lease_ttl_s)
        if job is None:
            return None
        logger.info("claimed export job %s → %s (attempts so far %d)", job.job_id, job.version, job.attempts)
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
                logger.warning("export job loop failed; retrying in %.0fs", self.retry_delay_s, exc_info=True)
                await asyncio.sleep(self.retry_delay_s)
                continue
            if outcome is None:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval_s)
                except TimeoutError:
                    pass

    async def run_gauges(self) -> None:
        """Background task: jobs-by-status gauges."""
        while True:
            try:
                self.metrics.job_counts(await self.store.counts())
            except asyncio.CancelledError:
                raise
            except Exception:  # the gauges stay stale until Postgres answers again
                logger.debug("export job counts not refreshed", exc_info=True)
            await asyncio.sleep(max(self.poll_interval_s, 1.0))
