"""Use case: build a dataset version and ask for training on it.

gather candidates (mined runs, corpora) → validate, dedupe, weight, split (domain.dataset) →
upload train.jsonl, val.jsonl, manifest.json → one transaction: datasets row + outbox
(DatasetBuilt, TrainingRequested) [+ the inbox claim of the RetrainRequested] → publish.

Nothing half-written: the row and the events exist only after every file is in S3; if an
upload fails the transaction never runs (the message is retried), and files left by a failed
attempt are referenced by nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from contracts import (
    Contract,
    DatasetBuilt,
    DatasetOptions,
    LoraOptions,
    RetrainRequested,
    TrainingRequested,
    deterministic_id,
    utcnow,
)
from servicekit.logs import log_fields
from servicekit.messaging import PermanentError

from ..domain.corpus import (
    CorpusUnavailableError,
    MalformedRecordError,
    SourceSpec,
    SourceSpecError,
    parse_records,
    parse_source,
)
from ..domain.dataset import Assembly, SourceReport, assemble, to_jsonl
from ..domain.examples import Example, MiningRules, mine_run
from ..domain.validation import Limits
from ..importers import IMPORTERS, detect
from ..metrics import MinerMetrics
from ..ports import CorpusImporter, CorpusReader, DatasetFiles, DatasetRow, MinerStore

logger = logging.getLogger("log_miner.build")

MANIFEST_FORMAT = "agentloop-sft/1"


def dataset_id_for(request_id: str) -> str:
    return deterministic_id("dataset", request_id)


def job_id_for(dataset_id: str) -> str:
    return deterministic_id("training-job", dataset_id)


@dataclass(frozen=True)
class BuildRequest:
    dataset_id: str
    correlation_id: str
    options: DatasetOptions
    training: LoraOptions
    trigger: str  # "operator" or "policy:<reason>"
    requested_by: str
    base_model: str | None = None
    reason: str = ""
    request_id: str | None = None
    claim: tuple[str, str] | None = None  # (message_id, type) claimed with the datasets row
    causation: Contract | None = None


@dataclass(frozen=True)
class BuildResult:
    built: DatasetBuilt | None = None
    training: TrainingRequested | None = None
    skipped: str | None = None  # "duplicate" | "empty"


@dataclass(frozen=True)
class BuildSettings:
    limits: Limits = Limits()
    include_unrated: bool = True
    hints_placement: str = "meta"
    default_base_model: str = "bundled"
    progress_every: int = 500


class BuildDataset:
    def __init__(self, store: MinerStore, files: DatasetFiles, reader: CorpusReader, metrics: MinerMetrics,
                 settings: BuildSettings, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.files = files
        self.reader = reader
        self.metrics = metrics
        self.settings = settings
        self.clock = clock
        # One build at a time per process: builds are CPU- and memory-heavy, and a redelivered
        # request waits here and then finds itself in the inbox instead of building twice.
        self._lock = asyncio.Lock()

    async def retrain(self, msg: RetrainRequested) -> BuildResult:
        """An operator's request: one dataset (id derived from the request) and a training job."""
        env = msg.envelope
        async with self._lock:
            if await self.store.seen(env.message_id):
                logger.info("duplicate delivery ignored", extra=log_fields(message_id=env.message_id,
                                                                           message_type=env.message_type))
                return BuildResult(skipped="duplicate")
            return await self._build(self._request_of(msg))

    def _request_of(self, msg: RetrainRequested) -> BuildRequest:
        env = msg.envelope
        logger.info("received %s", env.message_type, extra=log_fields(
            message_id=env.message_id, message_type=env.message_type, request_id=msg.request_id,
            requested_by=msg.requested_by, sources=msg.dataset.sources))
        return BuildRequest(
            dataset_id=dataset_id_for(msg.request_id), correlation_id=env.correlation_id, options=msg.dataset,
            training=msg.training, trigger="operator", requested_by=msg.requested_by, base_model=msg.base_model,
            reason=msg.reason, request_id=msg.request_id, claim=(env.message_id, env.message_type), causation=msg,
        )

    async def __call__(self, req: BuildRequest) -> BuildResult:
        async with self._lock:
            return await self._build(req)

    async def _build(self, req: BuildRequest) -> BuildResult:
        started = time.perf_counter()
        fields = log_fields(dataset_id=req.dataset_id, trigger=req.trigger)
        try:
            specs = _unique([parse_source(s) for s in req.options.sources])
        except SourceSpecError as exc:
            raise PermanentError(str(exc)) from exc
        logger.info("building dataset %s from %s", req.dataset_id, ", ".join(s.raw for s in specs), extra=fields)
        try:
            since = parse_since(req.options.since)
        except ValueError as exc:
            raise PermanentError(f"dataset.since: {exc}") from exc
        reports = [SourceReport(s.raw) for s in specs]
        candidates: list[Example] = []
        for spec, report in zip(specs, reports, strict=True):
            if spec.format == "mined":
                candidates += await self._mine(spec, report, since)
            else:
                candidates += await self._import(spec, report)
        s = self.settings
        try:
            assembly = await asyncio.to_thread(
                assemble, candidates, reports, limits=s.limits, val_fraction=req.options.val_fraction,
                weights=req.options.weights, max_examples=req.options.max_examples, hints_placement=s.hints_placement,
                shape_weights=req.options.shape_weights,
            )
        except ValueError as exc:  # a negative weight
            raise PermanentError(str(exc)) from exc
        counts = assembly.counts()
        logger.info("assembled %d examples (train %d, val %d); dropped %d duplicates, %d invalid %s; train shapes "
                    "%s weighted to %s", counts["total"], counts["train"], counts["val"], counts["duplicates"],
                    counts["invalid"], dict(assembly.invalid), dict(assembly.shapes.train_before),
                    dict(assembly.shapes.train_after), extra=fields)
        if counts["total"] == 0:
            return await self._skip_empty(req, fields)
        result = await self._store(req, assembly)
        if result.skipped is None:
            self._count(req, assembly, time.perf_counter() - started)
        return result

    # ------------------------------------------------------------------ gathering

    async def _mine(self, spec: SourceSpec, report: SourceReport, since: datetime | None) -> list[Example]:
        rules = MiningRules(include_unrated=self.settings.include_unrated)
        out: list[Example] = []
        runs = 0
        async for batch in self.store.mined_runs(since, batch=self.settings.progress_every):
            for item in batch:
                mined = mine_run(item, rules, source=spec.raw)
                if mined.example is not None:
                    out.append(mined.example)
            runs += len(batch)
            logger.info("mined %d runs so far: %d examples", runs, len(out))
        report.read = len(out)
        return out

    async def _import(self, spec: SourceSpec, report: SourceReport) -> list[Example]:
        try:
            data = await self.reader.read(spec.location)
        except CorpusUnavailableError as exc:
            raise PermanentError(f"corpus {spec.raw}: {exc}") from exc
        # Off the event loop: a large corpus must not stall AMQP heartbeats or other consumers.
        return await asyncio.to_thread(self._convert, spec, report, data)

    def _convert(self, spec: SourceSpec, report: SourceReport, data: bytes) -> list[Example]:
        importer: CorpusImporter | None = IMPORTERS.get(spec.format)
        out: list[Example] = []
        for lineno, record in parse_records(data):
            report.read += 1
            try:
                if not isinstance(record, dict):
                    raise MalformedRecordError("not a JSON object")
                if importer is None:
                    importer = detect(record)
                item = importer.convert(record)
            except MalformedRecordError:
                report.malformed += 1
                continue
            out.append(Example(
                messages=item.messages, tools=item.tools, source=spec.raw, kind=importer.format,
                origin=item.origin or f"line {lineno}", hints=item.hints,
            ))
            if report.read % self.settings.progress_every == 0:
                logger.info("imported %d records of %s", report.read, spec.raw)
        logger.info("imported %s: %d records, %d examples, %d malformed", spec.raw, report.read, len(out),
                    report.malformed)
        return out

    # ------------------------------------------------------------------ storing

    async def _skip_empty(self, req: BuildRequest, fields: dict) -> BuildResult:
        if req.claim is not None:
            async with self.store.transaction() as tx:
                if not await tx.claim(*req.claim):
                    return BuildResult(skipped="duplicate")
            self.metrics.messages_received.labels(type=req.claim[1]).inc()
        self.metrics.builds_skipped.labels(reason="empty").inc()
        logger.warning("no example to train on: no dataset built, no training requested", extra=fields)
        return BuildResult(skipped="empty")

    async def _store(self, req: BuildRequest, assembly: Assembly) -> BuildResult:
        version = await self.store.next_version()
        prefix = f"datasets/{req.dataset_id}/v{version}/"
        train, val = to_jsonl(assembly.train), to_jsonl(assembly.val)
        job_id = job_id_for(req.dataset_id)
        base_model = req.base_model or self.settings.default_base_model
        train_uri = await self.files.put(prefix + "train.jsonl", train, "application/x-ndjson")
        val_uri = await self.files.put(prefix + "val.jsonl", val, "application/x-ndjson")
        manifest = self._manifest(req, assembly, version, job_id, base_model, {
            "train": _file_entry(train_uri, train, len(assembly.train)),
            "val": _file_entry(val_uri, val, len(assembly.val)),
        })
        manifest_uri = await self.files.put(
            prefix + "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False).encode(), "application/json"
        )
        logger.info("uploaded %s (train %d, val %d)", prefix, len(assembly.train), len(assembly.val),
                    extra=log_fields(dataset_id=req.dataset_id, version=version))
        counts = assembly.counts()
        run_ids = assembly.run_ids()
        built = DatasetBuilt.create(
            correlation_id=req.correlation_id, message_id=deterministic_id("dataset-built", req.dataset_id),
            causation=req.causation, dataset_id=req.dataset_id, version=version, train_uri=train_uri, val_uri=val_uri,
            manifest_uri=manifest_uri, counts=counts, source_run_ids=run_ids,
        )
        training = TrainingRequested.create(
            correlation_id=req.correlation_id, message_id=deterministic_id("training-requested", job_id),
            causation=built, job_id=job_id, dataset_id=req.dataset_id, train_uri=train_uri,
            val_uri=val_uri if assembly.val else None, base_model=base_model, options=req.training,
            requested_by=req.requested_by,
        )
        row = DatasetRow(
            dataset_id=req.dataset_id, version=version, train_uri=train_uri, val_uri=val_uri,
            manifest_uri=manifest_uri, train_sha256=_sha256(train), val_sha256=_sha256(val), counts=counts,
            sources=[r.as_dict() for r in assembly.sources], source_run_ids=run_ids,
            feedback_ids=assembly.feedback_ids(), trigger=req.trigger, request_id=req.request_id,
            requested_by=req.requested_by, job_id=job_id,
        )
        async with self.store.transaction() as tx:
            if req.claim is not None and not await tx.claim(*req.claim):
                logger.info("duplicate delivery ignored (built meanwhile)", extra=log_fields(message_id=req.claim[0]))
                return BuildResult(skipped="duplicate")
            await tx.insert_dataset(row)
            await tx.stage(built, training)
        if req.claim is not None:
            self.metrics.messages_received.labels(type=req.claim[1]).inc()  # first deliveries only
        await self.store.publish(built, training)
        logger.info("dataset %s v%d built; training %s requested on %s", req.dataset_id, version, job_id, base_model,
                    extra=log_fields(dataset_id=req.dataset_id, version=version, job_id=job_id, counts=counts))
        return BuildResult(built, training)

    def _manifest(self, req: BuildRequest, assembly: Assembly, version: int, job_id: str, base_model: str,
                  files: dict) -> dict:
        s = self.settings
        model_versions: dict[str, int] = {}
        for example in assembly.examples:
            for v in example.model_versions:
                model_versions[v] = model_versions.get(v, 0) + 1
        return {
            "format": MANIFEST_FORMAT,
            "dataset_id": req.dataset_id,
            "version": version,
            "created_at": self.clock().isoformat(),
            "trigger": req.trigger,
            "request_id": req.request_id,
            "requested_by": req.requested_by,
            "reason": req.reason,
            "options": req.options.model_dump(mode="json"),
            "rules": {"include_unrated": s.include_unrated, "max_chars": s.limits.max_chars,
                      "max_messages": s.limits.max_messages, "hints_placement": s.hints_placement,
                      "split": "val when the dedupe key (sha256, as a fraction of 1) < val_fraction"},
            "counts": assembly.counts(),
            "dropped": {"duplicate": assembly.duplicates, "invalid": dict(sorted(assembly.invalid.items()))},
            "sources": [r.as_dict() for r in assembly.sources],
            "shapes": assembly.shapes.as_dict(),
            "files": files,
            "lineage": {
                "runs": len(assembly.run_ids()),
                "feedback": len(assembly.feedback_ids()),
                "model_versions": dict(sorted(model_versions.items())),
                "note": "per-example run_ids / feedback_ids are in each line's meta; all run ids in DatasetBuilt",
            },
            "training": {"job_id": job_id, "base_model": base_model},
        }

    def _count(self, req: BuildRequest, assembly: Assembly, seconds: float) -> None:
        m = self.metrics
        for report in assembly.sources:
            for kind, n in report.by_kind.items():
                m.examples_built.labels(kind=kind).inc(n)
        if assembly.duplicates:
            m.examples_dropped.labels(reason="duplicate").inc(assembly.duplicates)
        for reason, n in assembly.invalid.items():
            m.examples_dropped.labels(reason=reason).inc(n)
        m.datasets_built.labels(trigger=req.trigger.split(":", 1)[0]).inc()
        m.build_seconds.observe(seconds)


def parse_since(value: str | None) -> datetime | None:
    """DatasetOptions.since: an ISO time; without a zone it is UTC."""
    if not value:
        return None
    when = datetime.fromisoformat(value)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _unique(specs: list[SourceSpec]) -> list[SourceSpec]:
    seen: set[str] = set()
    return [s for s in specs if not (s.raw in seen or seen.add(s.raw))]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_entry(uri: str, data: bytes, examples: int) -> dict:
    return {"uri": uri, "sha256": _sha256(data), "bytes": len(data), "examples": examples}
