"""A trainer instance wired to fakes of its ports, and requests with data in the fake S3."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from prometheus_client import CollectorRegistry

from contracts import TrainingRequested
from servicekit.jobs import JobScheduler
from trainer.adapters.job_store import TrainingJobStore, job_of
from trainer.domain import Job
from trainer.metrics import TrainerMetrics
from trainer.service import AcceptTraining, JobPolicy, RunTrainingJob
from tests.servicekit.fakes import Clock, FakeJobQueue
from tests.trainer.service.fakes import (
    FakeArtifacts,
    FakeLauncher,
    FakeProgress,
    FakeResolver,
    Script,
)

TRAIN = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}]


@dataclass
class Instance:
    owner: str
    launcher: FakeLauncher
    progress: FakeProgress
    registry: CollectorRegistry
    metrics: TrainerMetrics
    run_job: RunTrainingJob
    scheduler: JobScheduler[Job]
    work_dir: Path

    def metric(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


@dataclass
class World:
    clock: Clock
    jobs: FakeJobQueue  # the shared fake under the trainer's real row mapping (`store`)
    store: TrainingJobStore
    artifacts: FakeArtifacts
    tmp: Path

    def job(self, job_id: str) -> Job:
        return job_of(self.jobs.rows[job_id])

    def row(self, job_id: str) -> SimpleNamespace:
        """The job's columns as attributes, and the mapped `job`."""
        return SimpleNamespace(job=self.job(job_id), **self.jobs.rows[job_id])

    def rows(self) -> list[SimpleNamespace]:
        return [self.row(job_id) for job_id in self.jobs.rows]

    def instance(self, *scripts: Script, owner: str = "trainer-a:1", max_attempts: int = 3,
                 progress_interval_s: float = 0.0, heartbeat_s: float = 0.01, lease_ttl_s: float = 30.0,
                 retry_delay_s: float = 10.0, resolver: FakeResolver | None = None) -> Instance:
        launcher, progress, registry = FakeLauncher(*scripts), FakeProgress(), CollectorRegistry()
        metrics = TrainerMetrics(registry)
        work_dir = self.tmp / owner.replace(":", "_")
        policy = JobPolicy(work_dir=work_dir, owner=owner, lease_ttl_s=lease_ttl_s, heartbeat_s=heartbeat_s,
                           max_attempts=max_attempts, retry_delay_s=retry_delay_s,
                           progress_interval_s=progress_interval_s)
        run_job = RunTrainingJob(self.store, self.artifacts, launcher, resolver or FakeResolver(), progress, metrics,
                                 policy, clock=lambda: self.clock.now)
        scheduler = JobScheduler(self.store, run_job, metrics.job_counts, owner=owner, lease_ttl_s=lease_ttl_s,
                                 poll_interval_s=0.01, retry_delay_s=retry_delay_s, what="training job",
                                 logger=logging.getLogger("trainer.scheduler"))
        return Instance(owner, launcher, progress, registry, metrics, run_job, scheduler, work_dir)

    def request(self, *, job_id: str | None = None, base_model: str = "bundled", with_data: bool = True,
                message_id: str | None = None, **options: object) -> TrainingRequested:
        job_id = job_id or f"job-{uuid.uuid4().hex[:8]}"
        prefix = f"datasets/ds-{job_id}/v1/"
        if with_data:
            data = "".join(json.dumps(r) + "\n" for r in TRAIN).encode()
            self.artifacts.objects[prefix + "train.jsonl"] = data
            self.artifacts.objects[prefix + "val.jsonl"] = data
        return TrainingRequested.create(
            correlation_id=f"corr-{job_id}", message_id=message_id, job_id=job_id, dataset_id=f"ds-{job_id}",
            train_uri=self.artifacts.uri(prefix + "train.jsonl"), val_uri=self.artifacts.uri(prefix + "val.jsonl"),
            base_model=base_model, options={"max_steps": 6, "checkpoint_every": 2, **options},
        )

    async def queue(self, request: TrainingRequested) -> None:
        assert await self.store.accept(request)

    def accept(self, instance: Instance) -> AcceptTraining:
        return AcceptTraining(self.store, instance.metrics, instance.scheduler.poke)


def make_world(tmp_path: Path) -> World:
    clock = Clock()
    queue = FakeJobQueue("job_id", clock)
    return World(clock, queue, TrainingJobStore(queue), FakeArtifacts(), tmp_path)
