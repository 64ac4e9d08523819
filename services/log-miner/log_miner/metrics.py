"""Prometheus objects of the log-miner (message RED metrics come from servicekit)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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

    def classified(self, model_version: str, label: str) -> None:
        self.runs_classified.labels(model_version=model_version, label=label).inc()
