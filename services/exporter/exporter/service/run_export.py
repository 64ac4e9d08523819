"""Run one leased export job: adapter from S3 → `python -m exporter.export.run` in a subprocess
(base resolution, merge, F16 GGUF, parity, quant ladder, Modelfile; its stage lines become logs,
metrics and the job's progress) → every file to S3 under `models/<version>/` → one transaction:
version registered as `candidate` with lineage + job completed + ExportCompleted in the outbox.

What ends an attempt is servicekit.attempts' ladder: a `failed` line (parity mismatch, bad adapter),
an unknown base or a missing adapter fail the job with export.failed and register nothing; a
process that ends without a result line is retried after `retry_delay_s` until it was started
`max_attempts` times; a lost lease kills the process and leaves the job to its new owner; a stopping
service kills the process, gives the lease back at once and refunds the attempt; S3/Postgres trouble
gives the lease back for a retry after the delay.
A re-run writes the same version name and the same S3 keys, so a takeover is harmless.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts import ExportCompleted, ExportedFile, ExportFailed, deterministic_id, utcnow
from modelregistry import ModelFile, RegistryError
from servicekit.attempts import Attempt, AttemptRunner, LeaseLostError, fresh_workdir
from servicekit.logs import log_fields

from ..domain import (
    ExportCrashedError,
    ExportFailedError,
    ExportJob,
    ExportOutput,
    ExportState,
    Failed,
    Stage,
    model_prefix,
    parse_event,
)
from ..export.job import ExportJobSpec
from ..metrics import ExporterMetrics
from ..ports import Artifacts, Candidate, ExportJobStore, ExportLauncher, Lineage

logger = logging.getLogger("exporter.job")


@dataclass(frozen=True)
class ExportPolicy:
    """Plain values from the settings."""

    work_dir: Path
    owner: str
    lease_ttl_s: float = 60.0
    heartbeat_s: float = 15.0
    max_attempts: int = 3
    retry_delay_s: float = 10.0
    quants: tuple[str, ...] = ("Q4_K_M", "Q5_K_M", "Q8_0")
    parity_tokens: int = 16
    parity_prompts: tuple[str, ...] | None = None
    upload_f16: bool = True
    model_cache_dir: Path | None = None


class RunExportJob:
    def __init__(self, store: ExportJobStore, artifacts: Artifacts, launcher: ExportLauncher,
                 lineage: Lineage, metrics: ExporterMetrics, policy: ExportPolicy,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.artifacts = artifacts
        self.launcher = launcher
        self.lineage = lineage
        self.metrics = metrics
        self.policy = policy
        self.clock = clock
        self.attempts = AttemptRunner(store, policy, what="export job", kind="export", stopped_by="exporter",
                                      logger=logger)

    def describe(self) -> dict[str, Any] | None:
        return self.attempts.describe()

    async def __call__(self, job: ExportJob) -> str:
        """Run one attempt of a just-claimed job; returns the outcome (completed, failed, crashed,
        lost_lease, error; stopped is raised as CancelledError)."""
        p = self.policy
        state = ExportState(job.job_id, job.version, attempt=job.attempts)
        self.metrics.running.labels(job_id=job.job_id, version=job.version).set(1)
        return await self.attempts.run(
            job.job_id, state, correlation=job.request.envelope.correlation_id, last_error=job.last_error,
            heartbeat=lambda: self.store.heartbeat(job.job_id, p.owner, p.lease_ttl_s, state.stage,
                                                   state.progress_doc()),
            work=lambda attempt: self._attempt(job, state, attempt), fail=lambda reason: self._fail(job, reason),
            workdir=p.work_dir / job.version, version=job.version,
            ended=lambda outcome: self.metrics.job_stopped(job.job_id, job.version, outcome),
        )

    # ------------------------------------------------------------------ one attempt (servicekit.attempts ends it)

    async def _attempt(self, job: ExportJob, state: ExportState, attempt: Attempt) -> str:
        workdir = self.policy.work_dir / job.version
        config = await self._prepare(job, workdir, state)
        await attempt.begin()

        async def handle(event: Any) -> None:
            if isinstance(event, Stage):
                if event.done and event.seconds is not None:
                    self._stage_done(state, event.name, event.seconds)
                else:
                    state.enter(event.name)
                logger.info("export job %s: %s %s", job.job_id, event.name,
                            f"done in {event.seconds:.1f}s" if event.done and event.seconds is not None else "started",
                            extra=log_fields(job_id=job.job_id, version=job.version, stage=event.name, **event.info))

        result = await attempt.follow(await self.launcher.start(config, workdir / "export.log"), parse_event, handle,
                                      (ExportOutput, Failed), name="export", logger=logger)
        if isinstance(result, Failed):
            reason = result.describe()
            raise ExportFailedError(reason) if result.permanent else ExportCrashedError(reason)
        await self._complete(job, state, result)
        return "completed"

    def _stage_done(self, state: ExportState, name: str, seconds: float) -> None:
        state.stage_seconds[name] = round(state.stage_seconds.get(name, 0.0) + seconds, 3)
        self.metrics.stage_duration.labels(stage=name).observe(seconds)

    async def _prepare(self, job: ExportJob, workdir: Path, state: ExportState) -> Path:
        req = job.request
        p = self.policy
        spec = ExportJobSpec(
            adapter_dir=workdir / "adapter", base_model=req.base_model, out_dir=workdir / "out", version=job.version,
            quants=list(p.quants), parity_prompts=list(p.parity_prompts) if p.parity_prompts else None,
            parity_tokens=p.parity_tokens, model_cache_dir=p.model_cache_dir,
        )
        config = await fresh_workdir(workdir, spec)
        state.enter("download")
        began = self.clock()
        adapter = await self.artifacts.download_dir(req.adapter_uri, spec.adapter_dir)
        if not (adapter / "adapter_config.json").is_file():
            raise ExportFailedError(f"{req.adapter_uri} holds no peft adapter (adapter_config.json missing)")
        self._stage_done(state, "download", self.clock() - began)
        logger.info("export job %s: adapter %s downloaded", job.job_id, req.adapter_uri,
                    extra=log_fields(job_id=job.job_id, version=job.version))
        state.enter("export")
        return config

    async def _upload(self, job: ExportJob, out: ExportOutput) -> list[ModelFile]:
        """Every file of the export to `models/<version>/`, digests checked against the process's."""
        prefix = model_prefix(job.version)
        planned: list[tuple[Path, str | None, str]] = [(Path(path), q, "gguf") for q, path in out.quant_paths.items()]
        if out.f16_path and self.policy.upload_f16:
            planned.append((Path(out.f16_path), "F16", "gguf"))
        if out.modelfile_path:
            planned.append((Path(out.modelfile_path), None, "modelfile"))
        files: list[ModelFile] = []
        for path, quant, kind in planned:
            uri, digest, size = await self.artifacts.upload_file(prefix + path.name, path)
            expected = out.sha256.get(path.name) or out.sha256.get(str(path)) or (quant and out.sha256.get(quant))
            if expected and expected != digest:
                raise ExportCrashedError(f"{path.name}: sha256 {digest} differs from the export's {expected}")
            files.append(ModelFile(quantization=quant, uri=uri, sha256=digest, size_bytes=size, kind=kind))
            logger.info("export job %s: uploaded %s (%d bytes)", job.job_id, uri, size,
                        extra=log_fields(job_id=job.job_id, version=job.version, sha256=digest))
        return files

    async def _complete(self, job: ExportJob, state: ExportState, out: ExportOutput) -> None:
        req = job.request
        if out.version != job.version:
            raise ExportCrashedError(f"the export process built {out.version!r}, not {job.version!r}")
        if not out.quant_paths:
            raise ExportFailedError("the export produced no quantized GGUF")
        for name, seconds in out.stage_seconds.items():
            if name not in state.stage_seconds:
                self._stage_done(state, name, seconds)
        state.enter("upload")
        began = self.clock()
        files = await self._upload(job, out)
        self._stage_done(state, "upload", self.clock() - began)
        state.enter("register")
        lineage = await self.lineage.lineage(req)
        duration = (utcnow() - job.started_at).total_seconds() if job.started_at else sum(state.stage_seconds.values())
        result = {"files": [f.to_doc() for f in files], "parity": out.parity, "stage_seconds": state.stage_seconds}
        candidate = Candidate(
            version=job.version, base_model=req.base_model, job_id=job.job_id, dataset_id=req.dataset_id,
            adapter_uri=req.adapter_uri, files=files, lineage=lineage,
            metrics={"training": req.metrics, "parity": out.parity, "stage_seconds": state.stage_seconds},
        )
        event = ExportCompleted.create(
            correlation_id=req.envelope.correlation_id, causation=req,
            message_id=deterministic_id("export-completed", job.job_id),
            model_version=job.version,
            files=[ExportedFile(uri=f.uri, sha256=f.sha256, size_bytes=f.size_bytes, kind=f.kind,
                                quantization=f.quantization) for f in files],
            duration_s=round(max(duration, 0.0), 3), job_id=job.job_id, dataset_id=req.dataset_id,
            base_model=req.base_model, adapter_uri=req.adapter_uri, parity=out.parity,
            stage_seconds=state.stage_seconds,
        )
        state.settled = True
        try:
            done = await self.store.complete(job.job_id, self.policy.owner, candidate=candidate, result=result,
                                             event=event)
        except RegistryError as exc:  # e.g. the version name is taken by another job: no retry helps
            raise ExportFailedError(f"registering {job.version} was refused: {exc}") from exc
        if not done:
            raise LeaseLostError(job.job_id)
        self.metrics.export_duration.observe(max(duration, 0.0))
        self.metrics.exported(files)
        logger.info("export job %s completed: %s registered as candidate (%d files)", job.job_id, job.version,
                    len(files), extra=log_fields(job_id=job.job_id, version=job.version,
                                                 stage_seconds=state.stage_seconds))

    async def _fail(self, job: ExportJob, reason: str) -> bool:
        req = job.request
        event = ExportFailed.create(
            correlation_id=req.envelope.correlation_id, causation=req,
            message_id=deterministic_id("export-failed", job.job_id), job_id=job.job_id, reason=reason,
        )
        return await self.store.fail(job.job_id, self.policy.owner, reason=reason, event=event)
