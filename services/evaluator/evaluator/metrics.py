"""Prometheus objects of the evaluator (message RED metrics come from servicekit)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class EvaluatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages_received = Counter(
            "evaluator_messages_received", "Messages taken in, first deliveries only", ["type"], registry=registry,
        )
        self.duration = Histogram(
            "evaluator_evaluation_duration_seconds", "Wall time of one evaluation attempt that reached a verdict",
            buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200), registry=registry,
        )
        self.suite_score = Gauge(
            "evaluator_suite_score", "Latest score of a model on a suite (latency: p95 seconds)",
            ["model_version", "quantization", "suite"], registry=registry,
        )
        self.gate_outcomes = Counter(
            "evaluator_gate_outcomes", "Verdicts of the gate per evaluation (error: no verdict reached)", ["outcome"],
            registry=registry,
        )
        self.category_regressions = Counter(
            "evaluator_category_regressions", "Gate refusals of a candidate quant for one category of an item suite "
            "(losing more than the category tolerance on at least min_category_items items)", ["suite", "category"],
            registry=registry,
        )
        self.items_answered = Counter(
            "evaluator_items_answered", "Suite items the model answered", ["role"], registry=registry,
        )
        self.baseline_cache = Counter(
            "evaluator_baseline_cache", "Production suite scores taken from the cache (hit) or evaluated (miss)",
            ["result"], registry=registry,
        )
        self.running = Gauge("evaluator_evaluation_running", "1 while an evaluation runs here", registry=registry)
        self.evaluations = Gauge("evaluator_evaluations", "Evaluations by status", ["status"], registry=registry)

    def counts(self, counts: dict[str, int]) -> None:
        for status in ("queued", "running", "completed", "failed"):
            self.evaluations.labels(status=status).set(counts.get(status, 0))
