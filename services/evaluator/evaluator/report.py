"""What an evaluation says: the state /health/detailed shows while it runs, the outcome of each quant,
its events (evaluation.completed, model.promoted) and its JSON report. No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from contracts import EvaluationCompleted, ExportedFile, ModelPromoted, SuiteScore, deterministic_id, utcnow
from evalkit.dataset_suite import DatasetItems
from evalkit.gate import GateResult
from evalkit.scoring import Evaluation, ItemResult, Progress, SuiteResult
from evalkit.suites import GENERATIVE, Suite

from .domain import EvaluationJob, ProductionModel, quant_name
from .ports import CachedScore

MAX_OUTPUT_CHARS = 2000  # of a model output kept in the report


@dataclass
class PreparedSuites:
    """The suites of one evaluation, and what the report says of how they were made."""

    suites: list[Suite]
    dataset: dict[str, Any] | None = None  # how dataset-val was built (dataset_primary only)
    primary_note: str | None = None  # why the primary is not the one asked for


@dataclass
class EvalState:
    """The running evaluation as /health/detailed shows it."""

    evaluation_id: str
    candidate: str
    attempt: int
    phase: str = "preparing"  # preparing → production → candidate → reporting
    model: str | None = None
    done: int = 0
    total: int = 0
    since: datetime = field(default_factory=utcnow)
    verdicts: dict[str, bool] = field(default_factory=dict)  # quant -> passed
    lease_lost: bool = False
    settled: bool = False

    def on_progress(self, p: Progress) -> None:
        self.done, self.total = p.done, p.total

    def describe(self) -> dict[str, Any]:
        return {"evaluation_id": self.evaluation_id, "candidate": self.candidate, "attempt": self.attempt,
                "phase": self.phase, "model": self.model, "items_done": self.done, "items_total": self.total,
                "since": self.since.isoformat(), "verdicts": dict(self.verdicts)}


@dataclass
class QuantOutcome:
    file: ExportedFile
    evaluation: Evaluation | None = None
    gate: GateResult | None = None
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.gate is not None and self.gate.passed


def outcome_events(job: EvaluationJob, production: ProductionModel, baseline: dict[str, CachedScore],
                   outcomes: list[QuantOutcome], winner: QuantOutcome | None, report_uri: str,
                   primary_suite: str | None) -> list[Any]:
    """evaluation.completed, and model.promoted when a quant passed (its first, smallest winner)."""
    export = job.export
    shown = winner or next((o for o in reversed(outcomes) if o.evaluation is not None), None)
    candidate_scores = []
    if shown is not None and shown.evaluation is not None:
        candidate_scores = [_suite_score(r, quant_name(shown.file)) for r in shown.evaluation.scores.values()]
    baseline_scores = [
        SuiteScore(suite=c.suite, score=c.score, per_category=c.per_category,
                   details={**c.details, "kind": c.kind, "quantization": production.quantization})
        for c in baseline.values()
    ]
    if winner is not None:
        reasons = [f"{quant_name(winner.file)}: {r}" for r in winner.gate.reasons]  # type: ignore[union-attr]
    else:
        reasons = []
        for o in outcomes:
            quant = quant_name(o.file)
            if o.error:
                reasons.append(f"{quant}: not evaluated: {o.error}")
            elif o.gate is not None:
                reasons += [f"{quant}: {r}" for r in o.gate.reasons if r.startswith("FAIL")]
    completed = EvaluationCompleted.create(
        correlation_id=export.envelope.correlation_id, causation=export,
        message_id=deterministic_id("evaluation-completed", job.evaluation_id),
        evaluation_id=job.evaluation_id, job_id=job.job_id, candidate=export.model_version,
        baseline=production.version, quantization=quant_name(winner.file) if winner else None,
        candidate_scores=candidate_scores, baseline_scores=baseline_scores, primary_suite=primary_suite,
        passed=winner is not None, reasons=reasons, report_uri=report_uri,
    )
    if winner is None:
        return [completed]
    promoted = ModelPromoted.create(
        correlation_id=export.envelope.correlation_id, causation=completed,
        message_id=deterministic_id("model-promoted", job.evaluation_id),
        model_version=export.model_version, job_id=job.job_id, evaluation_id=job.evaluation_id,
        adapter_uri=export.adapter_uri or "", base_model=export.base_model or "",
        quantization=quant_name(winner.file), gguf_uri=winner.file.uri, sha256=winner.file.sha256,
    )
    return [completed, promoted]


def report_of(job: EvaluationJob, settings: dict[str, Any], production: ProductionModel, prepared: PreparedSuites,
              keys: dict[str, str], gate_policy: Any, baseline: dict[str, CachedScore],
              outcomes: list[QuantOutcome], winner: QuantOutcome | None) -> dict[str, Any]:
    """The JSON report in S3: settings, gate rules, suites, production's and each quant's scores and items."""
    export = job.export
    suites = prepared.suites
    return {
        "evaluation_id": job.evaluation_id,
        "job_id": job.job_id,
        "candidate": export.model_version,
        "passed": winner is not None,
        "quantization": quant_name(winner.file) if winner else None,
        "created_at": utcnow().isoformat(),
        "settings": settings,
        "gate": {"primary": gate_policy.primary, "threshold": gate_policy.threshold,
                 "primary_note": prepared.primary_note, "min_category_items": gate_policy.min_category_items,
                 "rules": {n: {"kind": r.kind, "tolerance": r.tolerance,
                               **({"category_tolerance": r.category_limit} if r.kind in GENERATIVE else {})}
                           for n, r in gate_policy.rules.items()}},
        "suites": [{"name": s.name, "kind": s.kind, "items": len(s.items), "key": keys[s.name], "path": s.path,
                    "source": s.source, "of": list(s.of)} for s in suites],
        "dataset_suite": prepared.dataset,
        "baseline": {
            "version": production.version, "quantization": production.quantization, "gguf_uri": production.gguf_uri,
            "scores": {c.suite: {"kind": c.kind, "score": c.score, "per_category": c.per_category,
                                 "details": c.details} for c in baseline.values()},
            "items": [i for c in baseline.values() for i in c.items],
        },
        "candidates": [
            {
                "quantization": quant_name(o.file), "gguf_uri": o.file.uri, "sha256": o.file.sha256,
                "size_bytes": o.file.size_bytes, "error": o.error,
                "passed": o.passed, "reasons": o.gate.reasons if o.gate else [],
                "categories": [c.as_dict() for c in o.gate.categories] if o.gate else [],
                "seconds": o.evaluation.seconds if o.evaluation else None,
                "scores": {n: r.as_dict() for n, r in o.evaluation.scores.items()} if o.evaluation else {},
                "items": [item_doc(i) for i in o.evaluation.items] if o.evaluation else [],
            }
            for o in outcomes
        ],
    }


def _suite_score(result: SuiteResult, quant: str) -> SuiteScore:
    return SuiteScore(suite=result.suite, score=result.score, per_category=result.per_category,
                      details={**result.details, "kind": result.kind, "quantization": quant})


def item_doc(item: ItemResult) -> dict[str, Any]:
    return {"suite": item.suite, "id": item.id, "category": item.category, "expect": item.expect, "ok": item.ok,
            "code": item.code, "detail": item.detail, "output": item.output[:MAX_OUTPUT_CHARS],
            "seconds": round(item.seconds, 4), "calls": item.calls, "json_valid": item.json_valid,
            "json_problem": item.json_problem}


def item_result(doc: dict[str, Any]) -> ItemResult:
    """A cached per-item verdict (`_item_doc`) back as a result to measure derived suites on."""
    return ItemResult(suite=doc["suite"], id=doc["id"], category=doc["category"], expect=doc["expect"],
                      code=doc["code"], detail=doc["detail"], output=doc["output"], seconds=float(doc["seconds"]),
                      calls=int(doc["calls"]), json_valid=doc["json_valid"], json_problem=doc.get("json_problem"))


def read_of(built: DatasetItems) -> str:
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(built.skipped.items()))
    return f"{built.read} read" + (f"; skipped: {skipped}" if skipped else "")
