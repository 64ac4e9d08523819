"""Prometheus objects of the log-miner (message RED metrics come from servicekit)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .domain.canary import Verdict


class MinerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages_received = Counter(
            "log_miner_messages_received",  # exposed as log_miner_messages_received_total
            "Messages taken in, first deliveries only",
            ["type"],
            registry=registry,
        )
        self.runs_classified = Counter(
            "log_miner_runs_classified",
            "Runs classified by primary taxonomy label; a run that feedback relabels counts again under its new label",
            ["model_version", "label"],
            registry=registry,
        )
        self.interaction_batch_size = Histogram(
            "log_miner_interaction_batch_size",
            "Logged runs written per transaction (concurrent deliveries share one)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=registry,
        )
        self.examples_built = Counter(
            "log_miner_examples_built",
            "Examples written into datasets (weighted copies included), by kind",
            ["kind"],
            registry=registry,
        )
        self.examples_dropped = Counter(
            "log_miner_examples_dropped",
            "Candidate examples left out of a dataset, by reason (duplicate, malformed, or a validation rule)",
            ["reason"],
            registry=registry,
        )
        self.examples_dropped.labels(reason="duplicate")  # the builder's own reason: a series from the start
        self.datasets_built = Counter(
            "log_miner_datasets_built", "Dataset versions written", ["trigger"], registry=registry
        )
        self.builds_skipped = Counter(
            "log_miner_dataset_builds_skipped", "Builds that wrote nothing", ["reason"], registry=registry
        )
        self.build_seconds = Histogram(
            "log_miner_dataset_build_duration_seconds",
            "Time to build and store one dataset version",
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
            registry=registry,
        )
        self.policy_triggers = Counter(
            "log_miner_policy_triggers", "Times the retrain policy asked for a dataset and training", ["reason"],
            registry=registry,
        )
        self.window_failure_ratio = Gauge(
            "log_miner_window_failure_ratio", "Share of failed runs in the policy's window at its last evaluation",
            registry=registry,
        )
        self.canary_runs = Gauge(
            "log_miner_canary_runs", "Live runs recorded per arm of the running canary (candidate, production)",
            ["arm"], registry=registry,
        )
        self.canary_valid_call_ratio = Gauge(
            "log_miner_canary_valid_call_ratio", "Share of the arm's runs with tool calls whose calls were all valid",
            ["arm"], registry=registry,
        )
        self.canary_failure_ratio = Gauge(
            "log_miner_canary_failure_ratio", "Share of the arm's runs whose primary label is a failure", ["arm"],
            registry=registry,
        )
        self.canary_regressing = Gauge(
            "log_miner_canary_regressing", "1 while the running canary's candidate tests worse than production "
            "(the judge's one-sided tests at its alpha, or its latency bound)", registry=registry,
        )
        self.canary_verdicts = Counter(
            "log_miner_canary_verdicts",  # exposed as log_miner_canary_verdicts_total
            "Verdicts the canary judge sent (promote, rollback)", ["verdict"], registry=registry,
        )
        for verdict in ("promote", "rollback"):
            self.canary_verdicts.labels(verdict=verdict)
        self.canary_regressing.set(0)

    def classified(self, model_version: str, label: str) -> None:
        self.runs_classified.labels(model_version=model_version, label=label).inc()

    def canary_tallied(self, verdict: Verdict) -> None:
        for arm, tally in (("candidate", verdict.candidate), ("production", verdict.production)):
            self.canary_runs.labels(arm=arm).set(tally.runs)
            self.canary_valid_call_ratio.labels(arm=arm).set(tally.valid_call_ratio or 0.0)
            self.canary_failure_ratio.labels(arm=arm).set(tally.failure_ratio or 0.0)
        self.canary_regressing.set(1 if any(t.worse for t in verdict.tests) else 0)

    def canary_cleared(self) -> None:
        """No canary runs: the per-arm gauges go away."""
        for gauge in (self.canary_runs, self.canary_valid_call_ratio, self.canary_failure_ratio):
            gauge.clear()
        self.canary_regressing.set(0)
