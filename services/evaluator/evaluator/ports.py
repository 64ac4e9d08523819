"""The evaluator's ports. Adapters implement them; use cases and unit tests see only these."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from contracts import Contract, ExportCompleted, ExportedFile
from evalkit.scoring import Evaluation, Progress
from evalkit.suites import Suite

from .domain import EvaluationJob, ProductionModel


@dataclass(frozen=True)
class CachedScore:
    """Production's score on one suite, as cached per (version, quant, suite key)."""

    suite: str
    key: str
    kind: str
    score: float
    per_category: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)  # per-item verdicts, for reports


class EvaluationStore(Protocol):
    """`evaluator.evaluations` (+ inbox, outbox) and `evaluator.baseline_scores`. Writes under a
    lease check that `owner` still holds the evaluation and answer False / None when it does not."""

    async def accept(self, evaluation_id: str, export: ExportCompleted) -> bool:
        """Inbox claim + a queued evaluation, one transaction; False for a redelivery."""
        ...

    async def claim(self, owner: str, ttl_s: float) -> EvaluationJob | None:
        """Lease the oldest runnable evaluation (queued, or running with an expired lease)."""
        ...

    async def heartbeat(self, evaluation_id: str, owner: str, ttl_s: float, progress: dict[str, Any] | None) -> bool:
        ...

    async def start_attempt(self, evaluation_id: str, owner: str) -> int | None:
        ...

    async def release(self, evaluation_id: str, owner: str, *, error: str | None, retry_after_s: float,
                      refund_attempt: bool) -> bool:
        """Give the lease back; claimable again after `retry_after_s` (the attempt uncounted if refunded)."""
        ...

    async def finish(self, evaluation_id: str, owner: str, *, passed: bool, quantization: str | None,
                     report_uri: str | None, error: str | None, events: Sequence[Contract]) -> bool:
        """One transaction: the outcome + its events staged in the outbox, published after commit.
        False if the lease is lost."""
        ...

    async def cached_scores(self, version: str, quantization: str, keys: Sequence[str]) -> dict[str, CachedScore]:
        """Scores on record for these suite keys (by key)."""
        ...

    async def save_scores(self, version: str, quantization: str, scores: Sequence[CachedScore]) -> None:
        ...

    async def counts(self) -> dict[str, int]:
        ...


class ModelFiles(Protocol):
    async def production(self) -> ProductionModel:
        """The registry's production version and its served GGUF; ProductionUnavailableError."""
        ...

    async def local_production(self, model: ProductionModel) -> Path:
        ...

    async def local_candidate(self, file: ExportedFile) -> Path:
        """Downloaded and checked against `file.sha256`; CandidateUnavailableError otherwise."""
        ...


class Datasets(Protocol):
    async def regression_lines(self, source: str, dataset_id: str | None) -> list[dict[str, Any]]:
        """The examples of a regression suite's source (a val.jsonl path or URI, or the candidate's
        dataset); [] when there are none."""
        ...


class Reports(Protocol):
    async def put(self, evaluation_id: str, report: dict[str, Any]) -> str:
        """Store `evaluations/<id>/report.json`; returns its URI."""
        ...

    async def put_suite(self, evaluation_id: str, name: str, body: bytes) -> str:
        """Store a suite file built for this evaluation, `evaluations/<id>/<name>.jsonl`; returns its URI."""
        ...


class Scorer(Protocol):
    async def score(self, gguf: Path, suites: Sequence[Suite], *, label: str,
                    on_progress: Callable[[Progress], None], stop: threading.Event) -> Evaluation:
        """Load the GGUF once and answer every item (off the event loop)."""
        ...
