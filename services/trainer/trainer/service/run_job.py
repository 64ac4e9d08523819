"""Run one leased job: data and last checkpoint from S3 → the recipe in a subprocess → its JSON
lines become metrics, TrainingProgress events and checkpoints in S3 → the adapter goes to S3 and
the job completes with TrainingCompleted (or fails with TrainingFailed), each in one transaction
with its outbox row.

What ends an attempt is servicekit.attempts' ladder: a `failed` line, an unknown base model or a
missing dataset fail the job for good; a process that ends without a `completed` or `failed` line
(killed, out of memory) is retried after `retry_delay_s`, resuming from its last recorded
checkpoint, until it has been started `max_attempts` times; a lost lease kills the process and
leaves the job alone; a stopping service kills the process, gives the lease back at once and
refunds the attempt; S3/Postgres trouble gives the lease back for a retry after the delay.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts import TrainingCompleted, TrainingFailed, TrainingProgress, deterministic_id, utcnow
from servicekit.attempts import Attempt, AttemptRunner, LeaseLostError, fresh_workdir
from servicekit.logs import log_fields

from ..domain import (
    Checkpoint,
    Completed,
    Failed,
    Job,
    JobState,
    Progress,
    RecipeFailedError,
    Started,
    TrainingCrashedError,
    adapter_prefix,
    checkpoint_name,
    checkpoint_prefix,
    completion_metrics,
    parse_event,
    storage_name,
)
from ..metrics import TrainerMetrics
from ..ports import Artifacts, BaseModelResolver, JobStore, ProgressPublisher, TrainingLauncher
from ..training.job import TrainingJobSpec

logger = logging.getLogger("trainer.job")


@dataclass(frozen=True)
class JobPolicy:
    """Plain values from the settings."""

    work_dir: Path
    owner: str  # this process's lease identity
    lease_ttl_s: float = 60.0
    heartbeat_s: float = 15.0
    max_attempts: int = 3
    retry_delay_s: float = 10.0
    progress_interval_s: float = 1.0
    keep_checkpoints: int = 2  # local copies the recipe keeps (S3 keeps the latest recorded one)
    num_threads: int | None = None
    model_cache_dir: Path | None = None


class RunTrainingJob:
    def __init__(self, store: JobStore, artifacts: Artifacts, launcher: TrainingLauncher,
                 resolver: BaseModelResolver, progress: ProgressPublisher, metrics: TrainerMetrics,
                 policy: JobPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.artifacts = artifacts
        self.launcher = launcher
        self.resolver = resolver
        self.progress = progress
        self.metrics = metrics
        self.policy = policy
        self.clock = clock
        self._last_published = float("-inf")
        self.attempts = AttemptRunner(store, policy, what="training job", kind="train", stopped_by="trainer",
                                      logger=logger)

    def describe(self) -> dict[str, Any] | None:
        return self.attempts.describe()

    async def __call__(self, job: Job) -> str:
        """Run one attempt of a job this instance has just claimed; returns the outcome
        (completed, failed, crashed, lost_lease, error; stopped is raised as CancelledError)."""
        p = self.policy
        state = JobState(job.job_id, job.dataset_id, job.base_model, attempt=job.attempts,
                         checkpoint_uri=job.last_checkpoint_uri, checkpoint_step=job.last_checkpoint_step)
        self.metrics.job_started(job.job_id, job.dataset_id, job.base_model)
        return await self.attempts.run(
            job.job_id, state, correlation=job.request.envelope.correlation_id, last_error=job.last_error,
            heartbeat=lambda: self.store.heartbeat(job.job_id, p.owner, p.lease_ttl_s, state.progress_doc()),
            work=lambda attempt: self._attempt(job, state, attempt), fail=lambda reason: self._fail(job, reason),
            workdir=p.work_dir / storage_name(job.job_id),
            ended=lambda outcome: self.metrics.job_stopped(job.job_id, job.dataset_id, job.base_model, outcome),
        )

    # ------------------------------------------------------------------ one attempt (servicekit.attempts ends it)

    async def _attempt(self, job: Job, state: JobState, attempt: Attempt) -> str:
        workdir = self.policy.work_dir / storage_name(job.job_id)
        config = await self._prepare(job, workdir, state)
        number = await attempt.begin()
        state.phase = "training"

        async def handle(event: Any) -> None:
            if isinstance(event, Progress):
                await self._on_progress(job, state, event)
            elif isinstance(event, Checkpoint):
                await self._on_checkpoint(job, state, event, workdir)
            elif isinstance(event, Started):
                state.start_step, state.total_steps = event.start_step, event.total_steps
                logger.info("job %s attempt %d training steps %d..%d%s", job.job_id, state.attempt,
                            event.start_step + 1, event.total_steps,
                            f" (resumed from step {event.start_step})" if event.start_step else "",
                            extra=log_fields(job_id=job.job_id, start_step=event.start_step, **event.info))

        result = await attempt.follow(await self.launcher.start(config, workdir / "train.log"), parse_event, handle,
                                      (Completed, Failed), name="training", logger=logger)
        if isinstance(result, Failed):
            raise RecipeFailedError(result.reason)
        state.phase = "uploading"
        await self._complete(job, state, result, number)
        return "completed"

    async def _prepare(self, job: Job, workdir: Path, state: JobState) -> Path:
        req = job.request
        base = await self.resolver.resolve(job.base_model)
        checkpoints = workdir / "checkpoints"
        p = self.policy
        spec = TrainingJobSpec(
            train_path=workdir / "data" / "train.jsonl", val_path=workdir / "data" / "val.jsonl" if req.val_uri else None,
            base_model=base, output_dir=workdir / "adapter", checkpoint_dir=checkpoints, options=req.options,
            resume=True, keep_checkpoints=p.keep_checkpoints, num_threads=p.num_threads,
            model_cache_dir=p.model_cache_dir,
        )
        config = await fresh_workdir(workdir, spec)
        await self.artifacts.download(req.train_uri, spec.train_path)
        if req.val_uri and spec.val_path:
            await self.artifacts.download(req.val_uri, spec.val_path)
        if job.last_checkpoint_uri:
            await self.artifacts.download_dir(job.last_checkpoint_uri,
                                              checkpoints / checkpoint_name(job.last_checkpoint_uri))
            state.resumed_from_step = job.last_checkpoint_step
        return config

    async def _on_progress(self, job: Job, state: JobState, p: Progress) -> None:
        state.step, state.total_steps, state.loss = p.step, p.total_steps, p.loss
        state.learning_rate, state.tokens_per_s, state.eta_s = p.lr, p.tokens_per_s, p.eta_s
        self.metrics.progress(job.job_id, p)
        now = self.clock()
        if now - self._last_published < self.policy.progress_interval_s and p.step < p.total_steps:
            return
        self._last_published = now
        req = job.request
        await self.progress.publish(TrainingProgress.create(
            correlation_id=req.envelope.correlation_id, causation=req,
            message_id=deterministic_id("training-progress", job.job_id, state.attempt, p.step),
            job_id=job.job_id, step=p.step, total_steps=p.total_steps, loss=p.loss, learning_rate=p.lr,
            tokens_per_s=p.tokens_per_s, eta_s=p.eta_s,
        ))
        self.metrics.progress_published.inc()

    async def _on_checkpoint(self, job: Job, state: JobState, ckpt: Checkpoint, workdir: Path) -> None:
        name = checkpoint_name(ckpt.path)
        staging = workdir / "uploading" / name
        try:
            # Hard links: the recipe prunes old checkpoints while we upload; the links keep the files.
            await asyncio.to_thread(shutil.copytree, ckpt.path, staging, copy_function=os.link)
            uri = await self.artifacts.upload_dir(staging, checkpoint_prefix(job.job_id, name))
        except Exception:  # a checkpoint that did not reach S3 costs only the steps since the previous one
            logger.warning("checkpoint %s of job %s not uploaded; training goes on", name, job.job_id,
                           exc_info=True, extra=log_fields(job_id=job.job_id))
            return
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
        if not await self.store.record_checkpoint(job.job_id, self.policy.owner, ckpt.step, uri):
            raise LeaseLostError(job.job_id)
        self.metrics.checkpoints.inc()
        previous, state.checkpoint_uri, state.checkpoint_step = state.checkpoint_uri, uri, ckpt.step
        logger.info("job %s checkpoint at step %d in %s", job.job_id, ckpt.step, uri, extra=log_fields(job_id=job.job_id))
        if previous and previous != uri:
            try:
                await self.artifacts.delete_dir(previous)
            except Exception:  # an orphaned old checkpoint only costs storage
                logger.warning("could not delete superseded checkpoint %s", previous, exc_info=True)

    async def _complete(self, job: Job, state: JobState, done: Completed, attempt: int) -> None:
        adapter = Path(done.adapter_dir)
        if not (adapter / "adapter_config.json").is_file():
            raise TrainingCrashedError(f"the recipe reported an adapter in {adapter}, but there is none")
        uri = await self.artifacts.upload_dir(adapter, adapter_prefix(job.job_id))
        began = job.started_at or datetime.now(UTC)
        duration = max(0.0, (utcnow() - began).total_seconds())
        metrics = completion_metrics(done.metrics, duration_s=duration, attempts=attempt)
        req = job.request
        event = TrainingCompleted.create(
            correlation_id=req.envelope.correlation_id, causation=req,
            message_id=deterministic_id("training-completed", job.job_id),
            job_id=job.job_id, dataset_id=job.dataset_id, base_model=job.base_model, adapter_uri=uri,
            metrics=metrics, steps=done.steps,
        )
        state.settled = True
        if not await self.store.complete(job.job_id, self.policy.owner, adapter_uri=uri, metrics=metrics,
                                         steps=done.steps, event=event):
            raise LeaseLostError(job.job_id)
        self.metrics.job_duration.observe(duration)
        logger.info("job %s completed: %d steps, adapter %s", job.job_id, done.steps, uri,
                    extra=log_fields(job_id=job.job_id, metrics=metrics))

    async def _fail(self, job: Job, reason: str) -> bool:
        req = job.request
        event = TrainingFailed.create(
            correlation_id=req.envelope.correlation_id, causation=req,
            message_id=deterministic_id("training-failed", job.job_id), job_id=job.job_id, reason=reason,
        )
        return await self.store.fail(job.job_id, self.policy.owner, reason=reason, event=event)
