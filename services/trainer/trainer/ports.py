"""The trainer's ports. Adapters implement them; use cases and unit tests see only these."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

from contracts import TrainingCompleted, TrainingFailed, TrainingProgress, TrainingRequested

from .domain import Job


class JobStore(Protocol):
    """`trainer.jobs` with its inbox and outbox. Every write that needs the lease checks it
    (`owner` still holds the job) and answers False / None when it does not."""

    async def accept(self, request: TrainingRequested) -> bool:
        """One transaction: inbox claim of the message + a queued job row. False (no effect) for a
        redelivered message or a second request for a job id on record."""
        ...

    async def claim(self, owner: str, ttl_s: float) -> Job | None:
        """Lease the oldest runnable job (queued, or running with an expired lease); None if none."""
        ...

    async def heartbeat(self, job_id: str, owner: str, ttl_s: float, progress: dict[str, Any] | None) -> bool:
        """Extend the lease (and record the latest progress); False when the lease is lost."""
        ...

    async def start_attempt(self, job_id: str, owner: str) -> int | None:
        """Count a training process about to start; the new attempt number, None if the lease is lost."""
        ...

    async def record_checkpoint(self, job_id: str, owner: str, step: int, uri: str) -> bool:
        """The checkpoint at `uri` is complete in S3; kept only if newer than the one on record."""
        ...

    async def release(self, job_id: str, owner: str, *, error: str | None, retry_after_s: float,
                      refund_attempt: bool) -> bool:
        """Give the lease back; the job is claimable again after `retry_after_s`."""
        ...

    async def complete(self, job_id: str, owner: str, *, adapter_uri: str, metrics: dict[str, float],
                       steps: int, event: TrainingCompleted) -> bool:
        """One transaction: job completed + the event staged in the outbox, published after commit (the
        outbox relay retries a failed publish). False if the lease is lost."""
        ...

    async def fail(self, job_id: str, owner: str, *, reason: str, event: TrainingFailed) -> bool:
        """One transaction: job failed + the event staged in the outbox. False if the lease is lost."""
        ...

    async def counts(self) -> dict[str, int]:
        """Jobs by status."""
        ...


class Artifacts(Protocol):
    """Files in S3 (datasets in, checkpoints and adapters out)."""

    async def download(self, uri: str, dest: Path) -> Path:
        """One object to `dest`; DatasetUnavailableError when it does not exist or is not ours."""
        ...

    async def download_dir(self, uri: str, dest: Path) -> Path:
        """Every object under the prefix `uri` into `dest` (relative paths kept)."""
        ...

    async def upload_dir(self, src: Path, prefix: str) -> str:
        """Every file under `src` to `prefix` + relative path; returns the prefix's URI."""
        ...

    async def delete_dir(self, uri: str) -> None:
        """Every object under the prefix `uri`."""
        ...


class TrainingProcess(Protocol):
    """One running `python -m trainer.training.run`."""

    def lines(self) -> AsyncIterator[dict[str, Any]]:
        """Its JSON-lines events as they arrive, until stdout closes."""
        ...

    async def wait(self) -> int:
        """Its exit status (negative: killed by that signal)."""
        ...

    async def kill(self) -> None:
        """SIGKILL and reap; a no-op when it has exited."""
        ...

    def stderr_tail(self, max_chars: int = 2000) -> str:
        """The end of what it wrote to stderr (tracebacks), for logs and failure reasons."""
        ...


class TrainingLauncher(Protocol):
    async def start(self, config: Path, log_path: Path) -> TrainingProcess:
        """Start the recipe on a job.json; its stderr goes to `log_path`."""
        ...


class BaseModelResolver(Protocol):
    async def resolve(self, name: str) -> str:
        """A local .gguf file or HF checkpoint directory for a request's `base_model`;
        UnknownBaseModelError when this trainer cannot resolve it."""
        ...


class ProgressPublisher(Protocol):
    async def publish(self, event: TrainingProgress) -> None:
        """Best effort: a lost progress event is harmless, so failures are only logged."""
        ...
