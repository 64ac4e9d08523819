"""The export use case at the service layer, with fakes of our own ports: a completed export
registers a candidate with lineage and stages export.completed; a named failure fails the job
with export.failed and registers nothing; a crash is retried until max_attempts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from contracts import ExportCompleted, ExportFailed, TrainingCompleted
from exporter.domain import JobStatus, version_name
from exporter.metrics import ExporterMetrics
from exporter.adapters.dataset_lineage import LineageReader
from exporter.service import ExportPolicy, RunExportJob
from exporter.adapters.export_store import ExportStore
from tests.exporter.unit.fakes import FakeArtifacts, FakeLauncher, FakeProcess, fake_export_store

JOB = "3f2a9c1e-0000-4000-8000-000000000001"
ADAPTER = "s3://bucket/training/job/adapter/"


def _request() -> TrainingCompleted:
    return TrainingCompleted.create(correlation_id="corr-1", job_id=JOB, dataset_id="ds-1", base_model="bundled",
                                    adapter_uri=ADAPTER, metrics={"final_loss": 0.5}, steps=3)


def _artifacts() -> FakeArtifacts:
    a = FakeArtifacts()
    a.objects[ADAPTER + "adapter_config.json"] = b"{}"
    a.objects[ADAPTER + "adapter_model.safetensors"] = b"weights"
    train = a.put_json("datasets/ds-1/v2/train.jsonl", {})  # replaced below with JSON lines
    a.objects[train] = b'{"meta": {"run_ids": ["run-a", "run-b"]}}\n{"meta": {"run_ids": ["run-b"]}}\n'
    val = "s3://bucket/datasets/ds-1/v2/val.jsonl"
    a.objects[val] = b'{"meta": {"run_ids": ["run-c"]}}\n'
    a.put_json("datasets/ds-1/v2/manifest.json", {"version": 2, "training": {"job_id": JOB}, "counts": {"train": 2},
                                                   "files": {"train": {"uri": train}, "val": {"uri": val}}})
    a.put_json("datasets/ds-1/v1/manifest.json", {"version": 1, "training": {"job_id": "older"}, "files": {}})
    return a


def _completed(spec: dict[str, Any]) -> FakeProcess:
    out = Path(spec["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    stem = spec["version"]
    paths = {"f16": out / f"{stem}.F16.gguf", **{q: out / f"{stem}.{q}.gguf" for q in spec["quants"]},
             "modelfile": out / "Modelfile"}
    for name, p in paths.items():
        p.write_bytes(f"contents of {name}".encode())
    return FakeProcess([
        {"event": "stage", "name": "resolve_base", "done": False},
        {"event": "stage", "name": "resolve_base", "done": True, "seconds": 0.5},
        {"event": "stage", "name": "merge", "fraction": 0.0},
        {"event": "completed", "result": {
            "version": stem, "f16_path": str(paths["f16"]),
            "quant_paths": {q: str(paths[q]) for q in spec["quants"]}, "modelfile_path": str(paths["modelfile"]),
            "sha256": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths.values()},
            "parity": {"mismatches": 0}, "stage_seconds": {"merge": 1.0, "quantize": 2.0}}},
    ])


def _use_case(tmp_path: Path, store: ExportStore, artifacts: FakeArtifacts, launcher: FakeLauncher,
              **policy: Any) -> tuple[RunExportJob, ExporterMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = ExporterMetrics(registry)
    p = ExportPolicy(work_dir=tmp_path / "work", owner="me", heartbeat_s=0.05, lease_ttl_s=1.0,
                     quants=("Q4_K_M", "Q8_0"), **policy)
    return RunExportJob(store, artifacts, launcher, LineageReader(artifacts), metrics, p), metrics, registry


async def _run_once(run: RunExportJob, store: ExportStore) -> str:
    job = await store.claim("me", 1.0)
    assert job is not None
    return await run(job)


async def test_a_completed_export_registers_the_candidate_with_lineage_and_publishes(tmp_path: Path) -> None:
    store, artifacts, launcher = fake_export_store(), _artifacts(), FakeLauncher(_completed)
    run, _, registry = _use_case(tmp_path, store, artifacts, launcher)
    req = _request()
    version = version_name("bundled", JOB)
    assert await store.accept(req, version)
    assert await _run_once(run, store) == "completed"

    spec = launcher.started[0]
    assert spec["base_model"] == "bundled" and spec["version"] == version and spec["quants"] == ["Q4_K_M", "Q8_0"]
    candidate = store.registrar.registered[version]
    assert {(f.quantization, f.kind) for f in candidate.files} == {
        ("Q4_K_M", "gguf"), ("Q8_0", "gguf"), ("F16", "gguf"), (None, "modelfile")}
    assert all(f.uri.startswith(f"s3://bucket/models/{version}/") for f in candidate.files)
    for f in candidate.files:
        assert hashlib.sha256(artifacts.objects[f.uri]).hexdigest() == f.sha256
    assert candidate.lineage["source_run_ids"] == ["run-a", "run-b", "run-c"]
    assert candidate.lineage["dataset_manifest_uri"] == "s3://bucket/datasets/ds-1/v2/manifest.json"
    assert candidate.lineage["adapter_uri"] == ADAPTER and candidate.lineage["training_job_id"] == JOB

    (event,) = store.queue.published
    assert isinstance(event, ExportCompleted) and event.model_version == version and event.job_id == JOB
    assert event.envelope.correlation_id == "corr-1" and event.envelope.causation_id == req.envelope.message_id
    assert event.parity == {"mismatches": 0} and event.dataset_id == "ds-1" and event.adapter_uri == ADAPTER
    assert {"download", "resolve_base", "merge", "quantize", "upload"} <= set(event.stage_seconds)
    assert len(event.files) == 4 and store.queue.outbox == store.queue.published
    assert registry.get_sample_value("exporter_exports_total", {"outcome": "completed"}) == 1
    assert registry.get_sample_value("exporter_export_stage_duration_seconds_count", {"stage": "upload"}) == 1
    for f in event.files:  # each quantization's size, as uploaded
        if f.kind == "gguf" and f.quantization:
            assert registry.get_sample_value("exporter_gguf_size_bytes", {"quantization": f.quantization}) == f.size_bytes
    assert not (tmp_path / "work" / version).exists()  # scratch removed


async def test_a_parity_failure_fails_the_job_and_registers_nothing(tmp_path: Path) -> None:
    store, artifacts = fake_export_store(), _artifacts()
    launcher = FakeLauncher(lambda spec: FakeProcess(
        [{"event": "failed", "reason": "ParityError: F16 GGUF diverged at token 3", "details": {"prompt": 1}}],
        status=1))
    run, _, registry = _use_case(tmp_path, store, artifacts, launcher)
    await store.accept(_request(), version_name("bundled", JOB))
    assert await _run_once(run, store) == "failed"
    assert store.registrar.registered == {}
    (event,) = store.queue.published
    assert isinstance(event, ExportFailed) and event.job_id == JOB
    assert "ParityError" in event.reason and '"prompt": 1' in event.reason
    assert store.queue.rows[JOB]["status"] == JobStatus.FAILED
    assert not [u for u in artifacts.objects if "/models/" in u]
    assert registry.get_sample_value("exporter_exports_total", {"outcome": "failed"}) == 1


async def test_a_missing_adapter_fails_without_starting_a_process(tmp_path: Path) -> None:
    store, artifacts, launcher = fake_export_store(), FakeArtifacts(), FakeLauncher(_completed)
    run, _, _ = _use_case(tmp_path, store, artifacts, launcher)
    await store.accept(_request(), version_name("bundled", JOB))
    assert await _run_once(run, store) == "failed"
    assert launcher.started == []
    assert "nothing stored under" in store.queue.published[0].reason


async def test_a_crash_is_retried_then_fails_after_max_attempts(tmp_path: Path) -> None:
    store, artifacts = fake_export_store(), _artifacts()
    launcher = FakeLauncher(lambda spec: FakeProcess([{"event": "stage", "name": "merge"}], status=-9))
    run, _, _ = _use_case(tmp_path, store, artifacts, launcher, max_attempts=2, retry_delay_s=0)
    await store.accept(_request(), version_name("bundled", JOB))
    assert await _run_once(run, store) == "crashed"
    assert store.queue.published == [] and store.queue.rows[JOB]["status"] == JobStatus.RUNNING
    assert "without a result: MemoryError" in store.queue.rows[JOB]["last_error"]
    assert await _run_once(run, store) == "failed"
    assert "gave up after 2 attempts" in store.queue.published[0].reason
    assert len(launcher.started) == 2


async def test_a_re_run_after_a_takeover_exports_to_the_same_version(tmp_path: Path) -> None:
    """Idempotence: the version name and every S3 key come from the job id."""
    artifacts = _artifacts()
    keys = []
    for _ in range(2):
        store = fake_export_store()
        run, _, _ = _use_case(tmp_path, store, artifacts, FakeLauncher(_completed))
        await store.accept(_request(), version_name("bundled", JOB))
        assert await _run_once(run, store) == "completed"
        keys.append(sorted(f.uri for c in store.registrar.registered.values() for f in c.files))
        assert json.loads(store.queue.published[0].model_dump_json())["model_version"] == version_name("bundled", JOB)
    assert keys[0] == keys[1]


async def test_a_missing_or_malformed_dataset_is_noted_in_the_lineage_not_fatal() -> None:
    artifacts = FakeArtifacts()
    lineage = await LineageReader(artifacts).lineage(_request())
    assert lineage["source_run_ids"] == [] and "no dataset manifest" in lineage["note"]
    artifacts.put_json("datasets/ds-1/v1/manifest.json", {"version": 1, "files": "not a dict"})
    lineage = await LineageReader(artifacts).lineage(_request())
    assert lineage["source_run_ids"] == [] and "malformed" in lineage["note"]
    assert lineage["dataset_manifest_uri"] == "s3://bucket/datasets/ds-1/v1/manifest.json"
