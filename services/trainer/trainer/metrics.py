"""Prometheus objects of the trainer (message RED metrics come from servicekit).

Training gauges are labelled by `job_id`, and a job's series are removed when it stops running on
this instance: at most one live series per instance, so job ids cannot blow up cardinality.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .domain import JobStatus, Progress

OUTCOMES = ("completed", "failed", "crashed", "lost_lease", "stopped", "error")


class TrainerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages_received = Counter(
            "trainer_messages_received",  # exposed as trainer_messages_received_total
            "Messages taken in, first deliveries only",
            ["type"],
            registry=registry,
        )
        self.loss = Gauge("trainer_loss", "Token loss of the latest training step", ["job_id"], registry=registry)
        self.learning_rate = Gauge(
            "trainer_learning_rate", "Learning rate of the latest training step", ["job_id"], registry=registry
        )
        self.tokens_per_second = Gauge(
            "trainer_tokens_per_second", "Training throughput (real tokens/s) of the running attempt", ["job_id"],
            registry=registry,
        )
        self.step = Gauge("trainer_step", "Optimizer steps completed", ["job_id"], registry=registry)
        self.total_steps = Gauge("trainer_total_steps", "Optimizer steps the job will run", ["job_id"],
                                 registry=registry)
        self.eta = Gauge("trainer_eta_seconds", "Estimated time to the last step", ["job_id"], registry=registry)
        self.running = Gauge(
            "trainer_running_job_info", "1 for the job this instance is training", ["job_id", "dataset_id", "base_model"],
            registry=registry,
        )
        self.jobs = Gauge("trainer_jobs", "Training jobs by status (all instances)", ["status"], registry=registry)
        self.attempts = Counter(
            "trainer_training_attempts",  # exposed as trainer_training_attempts_total
            "Job attempts run by this instance, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.checkpoints = Counter(
            "trainer_checkpoints_uploaded", "Checkpoints uploaded to S3 and recorded", registry=registry
        )
        self.progress_published = Counter(
            "trainer_progress_events_published", "TrainingProgress events published", registry=registry
        )
        self.job_duration = Histogram(
            "trainer_job_duration_seconds",
            "First claim to completion of a job, across attempts",
            buckets=(60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400),
            registry=registry,
        )
        for outcome in OUTCOMES:
            self.attempts.labels(outcome=outcome)
        for status in JobStatus:
            self.jobs.labels(status=status.value)

    def job_started(self, job_id: str, dataset_id: str, base_model: str) -> None:
        self.running.labels(job_id=job_id, dataset_id=dataset_id, base_model=base_model).set(1)

    def progress(self, job_id: str, p: Progress) -> None:
        self.step.labels(job_id=job_id).set(p.step)
        self.total_steps.labels(job_id=job_id).set(p.total_steps)
        for gauge, value in ((self.loss, p.loss), (self.learning_rate, p.lr), (self.tokens_per_second, p.tokens_per_s),
                             (self.eta, p.eta_s)):
            if value is not None:
                gauge.labels(job_id=job_id).set(value)

    def job_stopped(self, job_id: str, dataset_id: str, base_model: str, outcome: str) -> None:
        self.attempts.labels(outcome=outcome).inc()
        for gauge in (self.loss, self.learning_rate, self.tokens_per_second, self.step, self.total_steps, self.eta):
            try:
                gauge.remove(job_id)
            except KeyError:  # no progress line arrived
                pass
        try:
            self.running.remove(job_id, dataset_id, base_model)
        except KeyError:
            pass

    def job_counts(self, counts: dict[str, int]) -> None:
        for status in JobStatus:
            self.jobs.labels(status=status.value).set(counts.get(status.value, 0))
