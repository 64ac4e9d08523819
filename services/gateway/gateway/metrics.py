"""Prometheus objects of the gateway (message RED metrics come from FastStream's middleware)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .settings import LimitSettings

# Gateway overhead is a few milliseconds, runs take seconds: two different scales.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


@dataclass(frozen=True)
class Metrics:
    http_requests: Counter
    http_latency: Histogram
    runs_submitted: Counter
    run_latency: Histogram
    auth_failures: Counter
    rate_limited: Counter
    steps_forwarded: Counter
    websockets_active: Gauge
    write_batch_size: Histogram
    screened: Counter


def build(registry: CollectorRegistry) -> Metrics:
    metrics = Metrics(
        http_requests=Counter(
            "gateway_http_requests", "HTTP requests by route template and status",
            ["method", "route", "status"], registry=registry,
        ),
        http_latency=Histogram(
            "gateway_http_request_duration_seconds", "Time to answer an HTTP request",
            ["method", "route"], buckets=HTTP_BUCKETS, registry=registry,
        ),
        runs_submitted=Counter(
            "gateway_runs_submitted", "Runs accepted and published, by how the client waits",
            ["mode"], registry=registry,
        ),
        run_latency=Histogram(
            "gateway_run_duration_seconds", "Submission to recorded outcome, end to end",
            ["status"], buckets=RUN_BUCKETS, registry=registry,
        ),
        auth_failures=Counter(
            "gateway_auth_failures", "Rejected credentials by reason", ["reason"], registry=registry,
        ),
        rate_limited=Counter(
            "gateway_rate_limited", "Requests refused by a rate limit", ["limit"], registry=registry,
        ),
        steps_forwarded=Counter(
            "gateway_reply_steps_forwarded", "Run steps from the reply queue handed to a listener",
            registry=registry,
        ),
        websockets_active=Gauge(
            "gateway_websockets_active", "Open run-streaming WebSockets", registry=registry,
        ),
        write_batch_size=Histogram(
            "gateway_run_index_batch_size",
            "Run-index writes per statement (concurrent creations or outcomes share one), by kind",
            ["kind"], buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=registry,
        ),
        screened=Counter(
            "gateway_screened_messages", "User and system messages screening fired on, by what was done",
            ["source", "action", "category"], registry=registry,
        ),
    )
    for limit in LimitSettings.model_fields:  # a series per limit from the start, at 0 until a refusal
        metrics.rate_limited.labels(limit=limit)
    return metrics
