"""Fakes of the evaluator's own ports (score cache, model files, datasets, reports, scorer); the job
store is the real `EvaluationJobStore` on the shared `tests.servicekit.fakes` job queue."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts import ExportedFile
from evalkit.scoring import Evaluation, Progress, evaluate
from evalkit.suites import Suite
from evaluator.domain import CandidateUnavailableError, ProductionModel
from evaluator.ports import CachedScore


@dataclass
class FakeScores:
    scores: dict[tuple[str, str, str], CachedScore] = field(default_factory=dict)

    async def cached_scores(self, version: str, quantization: str, keys: Sequence[str]) -> dict[str, CachedScore]:
        return {k: s for (v, q, k), s in self.scores.items() if v == version and q == quantization and k in keys}

    async def save_scores(self, version: str, quantization: str, scores: Sequence[CachedScore]) -> None:
        for s in scores:
            self.scores.setdefault((version, quantization, s.key), s)  # written once, as the table's rows


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
