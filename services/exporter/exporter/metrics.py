"""Prometheus objects of the exporter (message RED metrics come from servicekit).

The running-export gauge is labelled by job id and version and removed when the export stops
on this instance: at most one live series per instance.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .domain import JobStatus

OUTCOMES = ("completed", "failed", "crashed", "lost_lease", "stopped", "error")


class ExporterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages_received = Counter(
            "exporter_messages_received",  # exposed as exporter_messages_received_total
            "Messages taken in, first deliveries only", ["type"], registry=registry,
        )
        self.exports = Counter(
            "exporter_exports",  # exposed as exporter_exports_total
            "Export attempts run by this instance, by outcome", ["outcome"], registry=registry,
        )
        self.stage_duration = Histogram(
            "exporter_export_stage_duration_seconds", "Seconds per export stage (download, merge, gguf, parity, "
            "quantize, quant_check, modelfile, sha256, upload, ...)", ["stage"],
            buckets=(0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800), registry=registry,
        )
        self.export_duration = Histogram(
            "exporter_export_duration_seconds", "First claim to registered candidate, across attempts",
            buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200), registry=registry,
        )
        self.gguf_size = Gauge(
            "exporter_gguf_size_bytes", "Size of each quantization's GGUF in the last export this instance completed",
            ["quantization"], registry=registry,
        )
        self.running = Gauge(
            "exporter_running_export_info", "1 for the export this instance runs", ["job_id", "version"],
            registry=registry,
        )
        self.jobs = Gauge("exporter_export_jobs", "Export jobs by status (all instances)", ["status"],
                          registry=registry)
        self.deployments = Counter(
            "exporter_deployments",  # exposed as exporter_deployments_total
            "Alias-moving commands by cause (promoted, operator, rollback) and outcome (deployed, unchanged, refused)",
            ["cause", "outcome"], registry=registry,
        )
        self.production = Gauge(
            "exporter_production_model_info", "1 for the registry's production version (as this instance last set "
            "or read it)", ["version"], registry=registry,
        )
        self.canaries = Counter(
            "exporter_canaries",  # exposed as exporter_canaries_total
            "Canary commands recorded in the registry: started, promoted, rolled_back, stopped, refused", ["event"],
            registry=registry,
        )
        for event in ("started", "promoted", "rolled_back", "stopped", "refused"):
            self.canaries.labels(event=event)
        self.server_pushes = Counter(
            "exporter_model_server_pushes",  # exposed as exporter_model_server_pushes_total
            "Pushes of a version to the model server (Ollama) by outcome", ["outcome"], registry=registry,
        )
        for outcome in OUTCOMES:
            self.exports.labels(outcome=outcome)
        for status in JobStatus:
            self.jobs.labels(status=status.value)
        for outcome in ("pushed", "failed"):
            self.server_pushes.labels(outcome=outcome)

    def job_stopped(self, job_id: str, version: str, outcome: str) -> None:
        self.exports.labels(outcome=outcome).inc()
        try:
            self.running.remove(job_id, version)
        except KeyError:
            pass

    def exported(self, files) -> None:
        """The sizes of a completed export's GGUF files, by quantization (F16 included when uploaded);
        a quantization the last export did not make has no series."""
        self.gguf_size.clear()
        for f in files:
            if f.kind == "gguf" and f.quantization:
                self.gguf_size.labels(quantization=f.quantization).set(f.size_bytes)

    def job_counts(self, counts: dict[str, int]) -> None:
        for status in JobStatus:
            self.jobs.labels(status=status.value).set(counts.get(status.value, 0))

    def production_changed(self, version: str, previous: str | None) -> None:
        if previous:
            try:
                self.production.remove(previous)
            except KeyError:
                pass
        self.production.labels(version=version).set(1)
