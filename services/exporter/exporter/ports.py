"""The exporter's ports. Adapters implement them; use cases and unit tests see only these."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from contracts import Contract, ExportCompleted, ExportFailed, ModelDeployed, TrainingCompleted
from modelregistry import Canary, GateEvaluation, ModelFile, ModelVersion
from modelregistry.write import AliasMove

from .domain import ExportJob


@dataclass(frozen=True)
class Candidate:
    """What `complete` registers: the version, its files in S3 and its lineage."""

    version: str
    base_model: str
    job_id: str
    dataset_id: str | None
    adapter_uri: str | None
    files: list[ModelFile]
    lineage: dict[str, Any]
    metrics: dict[str, Any]


class ExportJobStore(Protocol):
    """`exporter.export_jobs` with the inbox and outbox, and the registry writes of an export.
    Every write under a lease checks it (`owner` still holds the job) and answers False / None
    when it does not."""

    async def accept(self, msg: TrainingCompleted, version: str) -> bool:
        """One transaction: inbox claim + a queued job. False (no effect) for a redelivery or a
        job id on record."""
        ...

    async def claim(self, owner: str, ttl_s: float) -> ExportJob | None:
        """Lease the oldest runnable job (queued, or running with an expired lease); None if none."""
        ...

    async def heartbeat(self, job_id: str, owner: str, ttl_s: float, stage: str | None,
                        progress: dict[str, Any] | None) -> bool:
        ...

    async def start_attempt(self, job_id: str, owner: str) -> int | None:
        ...

    async def release(self, job_id: str, owner: str, *, error: str | None, retry_after_s: float,
                      refund_attempt: bool) -> bool:
        ...

    async def complete(self, job_id: str, owner: str, *, candidate: Candidate, result: dict[str, Any],
                       event: ExportCompleted) -> bool:
        """One transaction: version registered as candidate + job completed + event in the outbox;
        the event is published after commit (the outbox relay retries a failed publish)."""
        ...

    async def fail(self, job_id: str, owner: str, *, reason: str, event: ExportFailed) -> bool:
        """One transaction: job failed + event in the outbox; nothing registered."""
        ...

    async def counts(self) -> dict[str, int]:
        ...

    async def last_finished(self) -> dict[str, Any] | None:
        """The most recently finished job (for /health/detailed)."""
        ...


class Deployments(Protocol):
    """Alias moves through the registry writer: inbox claim + move + ModelDeployed in the outbox,
    in one transaction; the event is published after commit. A RegistryError leaves everything
    unchanged (the claim included)."""

    async def version(self, name: str) -> ModelVersion | None:
        ...

    async def aliases(self) -> dict[str, str]:
        ...

    async def promote(self, message_id: str, message_type: str, version: str, *, cause: str, actor: str,
                      quantization: str | None, evaluation_id: str | None, reason: str,
                      deployed: DeployedFactory) -> AliasMove | None:
        """None for a duplicate delivery."""
        ...

    async def rollback(self, message_id: str, message_type: str, *, actor: str, reason: str,
                       deployed: DeployedFactory) -> AliasMove | None:
        ...

    async def record_evaluation(self, message_id: str, message_type: str, version: str, evaluation: GateEvaluation,
                                *, reject_reason: str | None) -> ModelVersion | None:
        """One transaction: inbox claim + the verdict merged into the version's metrics + with a
        `reject_reason`, the candidate marked rejected. The version as recorded; None for a
        duplicate delivery."""
        ...


class CanaryRegistry(Protocol):
    """Canaries through the registry writer, each command one transaction with its inbox claim
    and staged events. A RegistryError leaves everything unchanged (the claim included)."""

    async def start_canary(self, message_id: str, message_type: str, *, canary_id: str, version: str,
                           share_pct: float, mode: str, min_samples: int, max_duration_s: int, actor: str,
                           reason: str) -> Canary | None:
        """The canary as recorded; None for a duplicate delivery."""
        ...

    async def end_canary(self, message_id: str, message_type: str, canary_id: str, *, status: str, actor: str,
                         reason: str, report: dict[str, Any] | None, ended: EndedFactory,
                         deployed: DeployedFactory | None) -> tuple[Canary | None, AliasMove | None] | None:
        """End it (with `deployed`, promote its version in the same transaction, cause `canary`).
        None for a duplicate delivery; (None, None) when the canary had ended already."""
        ...


class EndedFactory(Protocol):
    def __call__(self, canary: Canary) -> Contract: ...


class DeployedFactory(Protocol):
    def __call__(self, move: AliasMove) -> ModelDeployed | None: ...


class Lineage(Protocol):
    async def lineage(self, req: TrainingCompleted) -> dict[str, Any]:
        """Where the version comes from: adapter, training job, dataset and its source run ids."""
        ...


class Artifacts(Protocol):
    """Files in S3: adapters and dataset manifests in, model files out."""

    async def download_dir(self, uri: str, dest: Path) -> Path:
        """Every object under the prefix `uri` into `dest`; AdapterUnavailableError when none/not ours."""
        ...

    async def upload_file(self, key: str, path: Path) -> tuple[str, str, int]:
        """(uri, sha256, size_bytes)."""
        ...

    async def read_json(self, uri: str) -> Any:
        ...

    async def read_jsonl(self, uri: str) -> list[dict[str, Any]]:
        ...

    async def list_uris(self, prefix: str) -> list[str]:
        """URIs of the objects under `prefix` in our bucket."""
        ...

    async def local_model_file(self, file: ModelFile) -> Path:
        """The file on local disk (bundled base, or downloaded and sha256-checked once)."""
        ...

    async def read_text(self, uri: str) -> str:
        ...


class ExportProcess(Protocol):
    def lines(self) -> AsyncIterator[dict[str, Any]]: ...

    async def wait(self) -> int: ...

    async def kill(self) -> None: ...

    def stderr_tail(self, max_chars: int = 2000) -> str: ...


class ExportLauncher(Protocol):
    async def start(self, config: Path, log_path: Path) -> ExportProcess: ...


class ModelServer(Protocol):
    """An external server that gets every production model (Ollama)."""

    async def publish(self, version: ModelVersion, gguf: Path, modelfile: str | None,
                      previous_version: str | None) -> str:
        """Upload, create, check it answers, unload the previous one; returns the server's model name.
        Raises on failure (the promotion is retried)."""
        ...
