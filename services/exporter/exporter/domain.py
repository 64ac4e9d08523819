"""Export jobs and deployments: states, names, S3 layout, the export process's events, and the
errors that decide whether a job is retried. No I/O.

An export job's life (one row of `exporter.export_jobs`, one per training job):

    queued ──claim──▶ running ──completed──▶ completed   (version registered as candidate)
                        │  ▲
      crash, lost lease,│  │ claim again (another instance, or after the retry delay): the
      service stopped   ▼  │ export is redone from the adapter (same version name: idempotent)
                      (lease free)
                        │
      parity mismatch, bad adapter, unknown base, crashed max_attempts times ──▶ failed (export.failed)
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from contracts import TrainingCompleted, utcnow
from modelkit.base_model import BUNDLED_MODEL_VERSION
from servicekit.attempts import JobError


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


RUNNABLE = (JobStatus.QUEUED, JobStatus.RUNNING)  # a running job whose lease expired is runnable again
BUNDLED_NAMES = frozenset({"bundled", BUNDLED_MODEL_VERSION})
STAGES = ("download", "resolve_base", "merge", "gguf", "parity", "quantize", "modelfile", "upload", "register")


@dataclass(frozen=True)
class ExportJob:
    job_id: str
    version: str
    request: TrainingCompleted
    status: JobStatus
    attempts: int
    last_error: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None

    @property
    def summary(self) -> str:
        return f"export job {self.job_id} → {self.version} (attempts so far {self.attempts})"


# ------------------------------------------------------------------ names and layout

_UNSAFE = re.compile(r"[^a-z0-9]+")


def base_family(base_model: str) -> str:
    """`bundled` / `gemma3-270m-q4_k_m@base` → `gemma3-270m`; a path → its last component, cleaned."""
    if base_model in BUNDLED_NAMES:
        return "gemma3-270m"
    name = base_model.rstrip("/").rsplit("/", 1)[-1].split("@", 1)[0]
    name = re.sub(r"\.gguf$", "", name, flags=re.IGNORECASE)
    name = re.sub(r"-(q\d.*|f16|f32|bf16)$", "", name, flags=re.IGNORECASE)  # the quant is not the family
    cleaned = _UNSAFE.sub("-", name.lower()).strip("-")
    return cleaned[:40] or "model"


def version_name(base_model: str, job_id: str) -> str:
    """`<base-family>-<job id prefix>` (decision 0011): the same job always exports to the same name."""
    prefix = _UNSAFE.sub("", job_id.lower())[:8]
    if len(prefix) < 8:
        prefix = hashlib.sha256(job_id.encode()).hexdigest()[:8]
    return f"{base_family(base_model)}-{prefix}"


def model_prefix(version: str) -> str:
    return f"models/{version}/"


# ------------------------------------------------------------------ errors

class ExportError(JobError):
    """An export could not be done. `permanent`: retrying cannot help."""


class PermanentExportError(ExportError):
    permanent = True


class AdapterUnavailableError(PermanentExportError):
    """The adapter URI is not in our bucket, or holds no adapter."""


class UnknownBaseModelError(PermanentExportError):
    """The training job names a base this exporter cannot resolve."""


class ExportFailedError(PermanentExportError):
    """The export process reported a failure (parity mismatch, bad adapter, conversion error)."""


class ExportCrashedError(ExportError):
    """The export process ended without saying why (killed, out of memory): retried."""



# ------------------------------------------------------------------ export process events

@dataclass(frozen=True)
class Stage:
    """A stage began (`done=False`) or ended (`done=True`, with its seconds)."""

    name: str
    done: bool = False
    seconds: float | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportOutput:
    """What `export_adapter` produced, as the process reports it: local paths and digests."""

    version: str
    f16_path: str | None
    quant_paths: dict[str, str]
    modelfile_path: str | None
    sha256: dict[str, str]
    parity: dict[str, Any]
    stage_seconds: dict[str, float]


@dataclass(frozen=True)
class Failed:
    reason: str
    permanent: bool = True
    details: dict[str, Any] = field(default_factory=dict)  # a ParityError's: where outputs diverged

    def describe(self, max_chars: int = 1500) -> str:
        if not self.details:
            return self.reason
        return f"{self.reason} | details: {json.dumps(self.details, sort_keys=True, default=str)}"[:max_chars]


ExportEvent = Stage | ExportOutput | Failed


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def json_safe(value: Any) -> Any:
    """NaN/inf (Python's json writes and reads them; JSON and Postgres JSONB do not) become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def parse_event(doc: dict[str, Any]) -> ExportEvent | None:
    """One JSON line of `python -m exporter.export.run`; None for events this service ignores.
    Raises KeyError/TypeError/ValueError for a known event with missing or malformed fields."""
    kind = doc.get("event")
    if kind == "stage":
        info = {k: v for k, v in doc.items() if k not in ("event", "name", "done", "seconds")}
        return Stage(str(doc["name"]), bool(doc.get("done", False)), _seconds(doc.get("seconds")), info)
    if kind == "completed":
        r = doc["result"]
        return ExportOutput(
            version=str(r["version"]), f16_path=r.get("f16_path"),
            quant_paths={str(k): str(v) for k, v in (r.get("quant_paths") or {}).items()},
            modelfile_path=r.get("modelfile_path"),
            sha256={str(k): str(v) for k, v in (r.get("sha256") or {}).items()},
            parity=json_safe(dict(r.get("parity") or {})),
            stage_seconds={str(k): s for k, v in (r.get("stage_seconds") or {}).items()
                           if (s := _seconds(v)) is not None},
        )
    if kind == "failed":
        details = doc.get("details")
        return Failed(str(doc.get("reason") or "the export failed without a reason"), bool(doc.get("permanent", True)),
                      json_safe(details) if isinstance(details, dict) else {})
    return None


# ------------------------------------------------------------------ lineage

def source_run_ids_from_lines(lines: list[dict[str, Any]]) -> list[str]:
    """Run ids from dataset lines' `meta.run_ids` (the log-miner's format), first-seen order."""
    seen: dict[str, None] = {}
    for line in lines:
        meta = line.get("meta") if isinstance(line, dict) else None
        for run_id in (meta or {}).get("run_ids") or []:
            if isinstance(run_id, str):
                seen.setdefault(run_id, None)
    return list(seen)


@dataclass
class ExportState:
    """The running export as /health/detailed shows it (and heartbeats record in its row)."""

    job_id: str
    version: str
    attempt: int
    stage: str = "download"
    since: datetime = field(default_factory=utcnow)
    stage_since: float = field(default_factory=time.monotonic)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    lease_lost: bool = False
    settled: bool = False

    def enter(self, stage: str) -> None:
        self.stage, self.stage_since = stage, time.monotonic()

    def progress_doc(self) -> dict[str, Any]:
        return {"attempt": self.attempt, "stage": self.stage, "stage_seconds": self.stage_seconds,
                "at": utcnow().isoformat()}

    def describe(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "version": self.version, "attempt": self.attempt, "stage": self.stage,
                "since": self.since.isoformat(), "stage_running_s": round(time.monotonic() - self.stage_since, 1),
                "stage_seconds": self.stage_seconds}
