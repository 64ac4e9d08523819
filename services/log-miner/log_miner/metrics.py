"""Prometheus objects of the log-miner (message RED metrics come from servicekit)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter


@dataclass(frozen=True)
class Metrics:
    messages_received: Counter


def build(registry: CollectorRegistry) -> Metrics:
    return Metrics(
        messages_received=Counter(
            "log_miner_messages_received",  # exposed as log_miner_messages_received_total
            "Messages taken in, first deliveries only",
            ["type"],
            registry=registry,
        ),
    )
