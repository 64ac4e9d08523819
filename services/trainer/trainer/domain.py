"""Training jobs: their states, the recipe's event protocol, S3 layout and the errors that decide
whether a job is retried. No I/O.

A job's life (one row of `trainer.jobs`):

    queued ──claim──▶ running ──completed──▶ completed
                        │  ▲
      crash, lost lease,│  │ claim again (another instance, or after the retry delay):
      service stopped   ▼  │ resumes from the last checkpoint recorded in S3
                      (lease free)
                        │
       failed line, bad dataset, unknown base, crashed max_attempts times ──▶ failed
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any

from contracts import TrainingRequested, utcnow
from servicekit.attempts import JobError


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


RUNNABLE = (JobStatus.QUEUED, JobStatus.RUNNING)  # a running job whose lease expired is runnable again


@dataclass(frozen=True)
class Job:
    job_id: str
    request: TrainingRequested
    status: JobStatus
    attempts: int  # training processes started for this job (a clean shutdown gives its attempt back)
    last_checkpoint_uri: str | None = None
    last_checkpoint_step: int | None = None
    last_error: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None  # first claim

    @property
    def dataset_id(self) -> str:
        return self.request.dataset_id

    @property
    def base_model(self) -> str:
        return self.request.base_model

    @property
    def summary(self) -> str:
        return (f"job {self.job_id} (attempts so far {self.attempts}"
                + (f", last checkpoint at step {self.last_checkpoint_step})" if self.last_checkpoint_uri else ")"))


# ------------------------------------------------------------------ S3 layout


def job_prefix(job_id: str) -> str:
    return f"training/{storage_name(job_id)}/"


def checkpoint_prefix(job_id: str, name: str) -> str:
    """`training/<job_id>/checkpoints/step-000020/`: the recipe's directory name, kept as is."""
    return f"{job_prefix(job_id)}checkpoints/{name}/"


def adapter_prefix(job_id: str) -> str:
    return f"{job_prefix(job_id)}adapter/"


def checkpoint_name(uri_or_path: str) -> str:
    """`step-000020` from a checkpoint directory path or its S3 prefix."""
    return PurePosixPath(uri_or_path.rstrip("/")).name


# ------------------------------------------------------------------ errors

class TrainingError(JobError):
    """A job could not be trained. `permanent`: retrying cannot help."""


class PermanentTrainingError(TrainingError):
    permanent = True


class UnknownBaseModelError(PermanentTrainingError):
    """The request names a base model this trainer cannot resolve."""


class DatasetUnavailableError(PermanentTrainingError):
    """The request's train/val file does not exist (or is not in our bucket)."""


class RecipeFailedError(PermanentTrainingError):
    """The recipe reported a failure (`failed` line): bad data, bad options, resume mismatch."""


class TrainingCrashedError(TrainingError):
    """The training process ended without saying why (killed, out of memory): retried."""



# ------------------------------------------------------------------ recipe events (run.py's JSON lines)

@dataclass(frozen=True)
class Started:
    start_step: int
    total_steps: int
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Progress:
    step: int
    total_steps: int
    loss: float | None
    lr: float | None
    tokens_per_s: float | None
    eta_s: float | None


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: str


@dataclass(frozen=True)
class Completed:
    adapter_dir: str
    steps: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class Failed:
    reason: str


RecipeEvent = Started | Progress | Checkpoint | Completed | Failed


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def parse_event(doc: dict[str, Any]) -> RecipeEvent | None:
    """One JSON line of `python -m trainer.training.run`; None for an event this service ignores.

    Raises KeyError/TypeError/ValueError for a known event with missing or malformed fields.
    """
    kind = doc.get("event")
    if kind == "progress":
        return Progress(int(doc["step"]), int(doc["total_steps"]), _num(doc.get("loss")), _num(doc.get("lr")),
                        _num(doc.get("tokens_per_s")), _num(doc.get("eta_s")))
    if kind == "checkpoint":
        return Checkpoint(int(doc["step"]), str(doc["path"]))
    if kind == "started":
        info = {k: v for k, v in doc.items() if k not in ("event", "start_step", "total_steps")}
        return Started(int(doc["start_step"]), int(doc["total_steps"]), info)
    if kind == "completed":
        metrics = {k: f for k, v in (doc.get("metrics") or {}).items() if (f := _num(v)) is not None}
        return Completed(str(doc["adapter_dir"]), int(doc["steps"]), metrics)
    if kind == "failed":
        return Failed(str(doc.get("reason") or "the recipe failed without a reason"))
    return None


def completion_metrics(recipe: dict[str, float], *, duration_s: float, attempts: int) -> dict[str, float]:
    """TrainingCompleted.metrics: the recipe's numbers plus what only the service knows.

    `final_loss` is the recipe's `train_loss` (mean of the last steps), `tokens_per_s` its training
    throughput in the last attempt; `duration_s` runs from the first claim to completion, across attempts.
    """
    out = dict(recipe)
    if "train_loss" in recipe:
        out["final_loss"] = recipe["train_loss"]
    if "train_tokens_per_s" in recipe:
        out["tokens_per_s"] = recipe["train_tokens_per_s"]
    out["duration_s"] = round(duration_s, 3)
    out["attempts"] = float(attempts)
    return out


_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def storage_name(job_id: str) -> str:
    """The job id where it is a safe path component (S3 keys, the local work dir), else a stable hash."""
    if _SAFE_ID.fullmatch(job_id) and ".." not in job_id:
        return job_id
    return "job-" + hashlib.sha256(job_id.encode()).hexdigest()[:32]


@dataclass
class JobState:
    """The running job as /health/detailed shows it (and heartbeats record in its row)."""

    job_id: str
    dataset_id: str
    base_model: str
    attempt: int
    phase: str = "preparing"  # preparing → training → uploading
    since: datetime = field(default_factory=utcnow)
    resumed_from_step: int | None = None
    start_step: int | None = None
    step: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    learning_rate: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None
    checkpoint_uri: str | None = None
    checkpoint_step: int | None = None
    lease_lost: bool = False
    settled: bool = False  # the job's outcome (or its release) is written: no more heartbeats

    def progress_doc(self) -> dict[str, Any] | None:
        if self.step is None and self.start_step is None:
            return None
        return {"attempt": self.attempt, "start_step": self.start_step, "step": self.step,
                "total_steps": self.total_steps, "loss": self.loss, "eta_s": self.eta_s,
                "tokens_per_s": self.tokens_per_s, "at": utcnow().isoformat()}

    def describe(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id, "dataset_id": self.dataset_id, "base_model": self.base_model,
            "attempt": self.attempt, "phase": self.phase, "since": self.since.isoformat(),
            "resumed_from_step": self.resumed_from_step, "step": self.step, "total_steps": self.total_steps,
            "loss": self.loss, "learning_rate": self.learning_rate, "tokens_per_s": self.tokens_per_s,
            "eta_s": self.eta_s, "checkpoint_step": self.checkpoint_step,
        }
