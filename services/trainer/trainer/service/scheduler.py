"""The job loop of one trainer instance (servicekit.jobs): claim a runnable job under a lease, run it, repeat.

One training at a time per instance (a training uses every core it is given). A job whose lease
expired (its trainer died) resumes from its last checkpoint.
"""

from __future__ import annotations

import logging

from servicekit.jobs import JobScheduler

from ..domain import Job
from ..metrics import TrainerMetrics
from ..ports import JobStore
from .run_job import RunTrainingJob

logger = logging.getLogger("trainer.scheduler")


def training_scheduler(store: JobStore, run_job: RunTrainingJob, metrics: TrainerMetrics, *, owner: str,
                       lease_ttl_s: float, poll_interval_s: float, retry_delay_s: float) -> JobScheduler[Job]:
    return JobScheduler(store, run_job, metrics.job_counts, owner=owner, lease_ttl_s=lease_ttl_s,
                        poll_interval_s=poll_interval_s, retry_delay_s=retry_delay_s, what="training job",
                        describe=_describe, logger=logger)


def _describe(job: Job) -> str:
    return (f"job {job.job_id} (attempts so far {job.attempts}"
            + (f", last checkpoint at step {job.last_checkpoint_step})" if job.last_checkpoint_uri else ")"))
