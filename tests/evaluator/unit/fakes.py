"""Fakes of the evaluator's own ports (store, model files, datasets, reports, scorer)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts import Contract, ExportCompleted, ExportedFile
from evalkit.scoring import Evaluation, Progress, evaluate
from evalkit.suites import Suite
from evaluator.domain import CandidateUnavailableError, EvaluationJob, ProductionModel
from evaluator.ports import CachedScore


@dataclass
class Row:
    export: ExportCompleted
    status: str = "queued"
    attempts: int = 0
    owner: str | None = None
    last_error: str | None = None
    passed: bool | None = None
    quantization: str | None = None
    report_uri: str | None = None


@dataclass
class FakeStore:
    rows: dict[str, Row] = field(default_factory=dict)
    inbox: set[str] = field(default_factory=set)
    outbox: list[Contract] = field(default_factory=list)
    published: list[Contract] = field(default_factory=list)
    scores: dict[tuple[str, str, str], CachedScore] = field(default_factory=dict)

    async def accept(self, evaluation_id: str, export: ExportCompleted) -> bool:
        if export.envelope.message_id in self.inbox:
            return False
        self.inbox.add(export.envelope.message_id)
        self.rows.setdefault(evaluation_id, Row(export))
        return True

    async def claim(self, owner: str, ttl_s: float) -> EvaluationJob | None:
        for eid, row in self.rows.items():
            if row.status in ("queued", "running") and row.owner is None:
                row.status, row.owner = "running", owner
                return EvaluationJob(eid, row.export, row.attempts, row.last_error)
        return None

    def _held(self, eid: str, owner: str) -> Row | None:
        row = self.rows.get(eid)
        return row if row is not None and row.owner == owner and row.status == "running" else None

    async def heartbeat(self, eid: str, owner: str, ttl_s: float, progress: dict[str, Any] | None) -> bool:
        return self._held(eid, owner) is not None

    async def start_attempt(self, eid: str, owner: str) -> int | None:
        row = self._held(eid, owner)
        if row is None:
            return None
        row.attempts += 1
        return row.attempts

    async def release(self, eid: str, owner: str, *, error: str | None, retry_after_s: float,
                      refund_attempt: bool) -> bool:
        row = self._held(eid, owner)
        if row is None:
            return False
        if refund_attempt:
            row.attempts = max(0, row.attempts - 1)
        row.owner, row.last_error = None, error if error is not None else row.last_error
        return True

    async def finish(self, eid: str, owner: str, *, passed: bool, quantization: str | None, report_uri: str | None,
                     error: str | None, events: Sequence[Contract]) -> bool:
        row = self._held(eid, owner)
        if row is None:
            return False
        row.status = "completed" if report_uri else "failed"
        row.owner, row.passed, row.quantization, row.report_uri = None, passed, quantization, report_uri
        self.outbox.extend(events)
        return True

    async def publish(self, *events: Contract) -> None:
        self.published.extend(events)

    async def cached_scores(self, version: str, quantization: str, keys: Sequence[str]) -> dict[str, CachedScore]:
        return {k: s for (v, q, k), s in self.scores.items() if v == version and q == quantization and k in keys}

    async def save_scores(self, version: str, quantization: str, scores: Sequence[CachedScore]) -> None:
        for s in scores:
            self.scores[(version, quantization, s.key)] = s

    async def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows.values():
            out[row.status] = out.get(row.status, 0) + 1
        return out


PRODUCTION = ProductionModel("base@1", "Q4_K_M", "bundled:", "")


@dataclass
class FakeModels:
    missing: set[str] = field(default_factory=set)  # candidate URIs that cannot be fetched
    production_error: Exception | None = None

    async def production(self) -> ProductionModel:
        if self.production_error is not None:
            raise self.production_error
        return PRODUCTION

    async def local_production(self, model: ProductionModel) -> Path:
        return Path("/models/production.gguf")

    async def local_candidate(self, file: ExportedFile) -> Path:
        if file.uri in self.missing:
            raise CandidateUnavailableError(f"{file.uri}: not found")
        return Path("/models") / file.uri.rsplit("/", 1)[-1]


@dataclass
class FakeDatasets:
    lines: list[dict[str, Any]] = field(default_factory=list)
    asked: list[tuple[str, str | None]] = field(default_factory=list)

    async def regression_lines(self, source: str, dataset_id: str | None) -> list[dict[str, Any]]:
        self.asked.append((source, dataset_id))
        return list(self.lines)


@dataclass
class FakeReports:
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    suites: dict[tuple[str, str], bytes] = field(default_factory=dict)

    async def put(self, evaluation_id: str, report: dict[str, Any]) -> str:
        self.reports[evaluation_id] = report
        return f"s3://bucket/evaluations/{evaluation_id}/report.json"

    async def put_suite(self, evaluation_id: str, name: str, body: bytes) -> str:
        self.suites[(evaluation_id, name)] = body
        return f"s3://bucket/evaluations/{evaluation_id}/{name}.jsonl"


class ScriptedModel:
    def __init__(self, answer: Callable[[str], str]) -> None:
        self.answer = answer

    def generate(self, prompt: str, max_tokens: int, tools=()) -> str:
        return self.answer(prompt)


@dataclass
class FakeScorer:
    """Runs the real evalkit scoring with a scripted model per GGUF file name."""

    models: dict[str, Callable[[str], str]]
    calls: list[tuple[str, list[str]]] = field(default_factory=list)

    async def score(self, gguf: Path, suites: Sequence[Suite], *, label: str,
                    on_progress: Callable[[Progress], None], stop: threading.Event) -> Evaluation:
        self.calls.append((gguf.name, [s.name for s in suites]))
        return evaluate(ScriptedModel(self.models[gguf.name]), suites, progress=on_progress, should_stop=stop.is_set)
