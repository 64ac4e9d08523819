"""The job loop of one exporter instance (servicekit.jobs): claim a runnable export under a lease, run it, repeat.

One export at a time per instance (merging and quantizing use every core given). A job whose lease
expired (its exporter died) is redone.
"""

from __future__ import annotations

import logging

from servicekit.jobs import JobScheduler

from ..domain import ExportJob
from ..metrics import ExporterMetrics
from ..ports import ExportJobStore
from .run_export import RunExportJob

logger = logging.getLogger("exporter.scheduler")


def export_scheduler(store: ExportJobStore, run_job: RunExportJob, metrics: ExporterMetrics, *, owner: str,
                     lease_ttl_s: float, poll_interval_s: float, retry_delay_s: float) -> JobScheduler[ExportJob]:
    return JobScheduler(store, run_job, metrics.job_counts, owner=owner, lease_ttl_s=lease_ttl_s,
                        poll_interval_s=poll_interval_s, retry_delay_s=retry_delay_s, what="export job",
                        describe=_describe, logger=logger)


def _describe(job: ExportJob) -> str:
    return f"export job {job.job_id} → {job.version} (attempts so far {job.attempts})"
