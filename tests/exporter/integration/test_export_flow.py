"""training.completed → export on the real model → export.completed + a registered candidate.

The adapter is a real peft LoRA on the bundled Gemma 3 270M (lora_B seeded non-zero, so the
merge changes the weights), uploaded to S3 where the trainer would put it, with a log-miner
style dataset (manifest + lines carrying run ids) for the lineage.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import asyncpg
import httpx
import pytest
from minio import Minio

import modelregistry as reg
from contracts import TrainingCompleted, new_id
from tests.exporter.integration.conftest import Bus, ExporterEnv, eventually
from tests.harness import ServiceProcess

LORA_TARGETS = ["q_proj", "v_proj"]


@pytest.fixture(scope="module")
def lora_adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real adapter: rank 4 on q/v, lora_B ~ N(0, 0.02²) from a fixed seed."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from modelkit.base_model import bundled_gguf_path
    from modelkit.hf_base import resolve_base_model

    base_dir = resolve_base_model(bundled_gguf_path())  # converted once per cache (~2 min the first time)
    torch.manual_seed(7)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32),
                           LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=LORA_TARGETS))
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
    out = tmp_path_factory.mktemp("exporter-lora")
    model.save_pretrained(out)
    return out


def _put(s3: Minio, bucket: str, key: str, data: bytes) -> str:
    s3.put_object(bucket, key, io.BytesIO(data), len(data))
    return f"s3://{bucket}/{key}"


def _dataset(s3: Minio, bucket: str, dataset_id: str, job_id: str) -> list[str]:
    """A dataset as the log-miner writes it; returns the run ids its lines name."""
    line = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], "tools": []}
    train = [json.dumps(line | {"meta": {"run_ids": [f"run-{i}", "run-shared"]}}) for i in range(3)]
    val = [json.dumps(line | {"meta": {"run_ids": ["run-val"]}})]
    prefix = f"datasets/{dataset_id}/v1/"
    train_uri = _put(s3, bucket, prefix + "train.jsonl", "\n".join(train).encode())
    val_uri = _put(s3, bucket, prefix + "val.jsonl", "\n".join(val).encode())
    manifest = {"format": "agentloop-sft/1", "dataset_id": dataset_id, "version": 1, "counts": {"train": 3, "val": 1},
                "files": {"train": {"uri": train_uri}, "val": {"uri": val_uri}},
                "training": {"job_id": job_id, "base_model": "bundled"}}
    _put(s3, bucket, prefix + "manifest.json", json.dumps(manifest).encode())
    return ["run-0", "run-shared", "run-1", "run-2", "run-val"]


@pytest.mark.slow
@pytest.mark.timeout(1500)
async def test_a_trained_adapter_becomes_a_registered_candidate_with_its_quant_ladder(
    bus: Bus, exporter: ServiceProcess, exporter_env: ExporterEnv, s3: Minio, lora_adapter: Path,
    registry_conn: asyncpg.Connection,
) -> None:
    job_id, dataset_id = new_id(), f"ds-{new_id()[:8]}"
    bucket = exporter_env.bucket
    for path in lora_adapter.rglob("*"):
        if path.is_file():
            _put(s3, bucket, f"training/{job_id}/adapter/{path.relative_to(lora_adapter).as_posix()}",
                 path.read_bytes())
    run_ids = _dataset(s3, bucket, dataset_id, job_id)
    msg = TrainingCompleted.create(correlation_id=new_id(), job_id=job_id, dataset_id=dataset_id,
                                   base_model="bundled", adapter_uri=f"s3://{bucket}/training/{job_id}/adapter/",
                                   metrics={"final_loss": 1.25}, steps=2)
    await bus.publish(msg)

    async def running_export() -> dict | None:
        r = httpx.get(exporter.url + "/health/detailed", timeout=5).json()
        return r.get("current_export")

    current = await eventually(running_export, 120, "the export to show as running")
    assert current["job_id"] == job_id

    (done,) = await eventually(lambda: bus.of("export.completed.v1", job_id=job_id) or
                               bus.of("export.failed.v1", job_id=job_id), 1200, "the export's outcome")
    assert "reason" not in done, f"export failed: {done.get('reason')}"
    version = done["model_version"]
    assert version == f"gemma3-270m-{job_id[:8]}"
    assert done["envelope"]["causation_id"] == msg.envelope.message_id
    by_kind = {(f["kind"], f["quantization"]) for f in done["files"]}
    assert by_kind == {("gguf", "Q4_K_M"), ("gguf", "Q8_0"), ("gguf", "F16"), ("modelfile", None)}  # EXPORT__QUANTS
    for f in done["files"]:  # every file in S3 under models/<version>/, digest and size as announced
        key = f["uri"].removeprefix(f"s3://{bucket}/")
        assert key.startswith(f"models/{version}/")
        resp = s3.get_object(bucket, key)
        try:
            digest, size = hashlib.sha256(), 0
            for chunk in resp.stream(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        finally:
            resp.close()
            resp.release_conn()
        assert (digest.hexdigest(), size) == (f["sha256"], f["size_bytes"])
    assert done["parity"]["mismatches"] == [] and done["parity"]["tokenizer_identical"] is True
    assert {"download", "merge", "gguf", "parity", "quantize", "upload"} <= set(done["stage_seconds"])
    assert done["dataset_id"] == dataset_id and done["adapter_uri"] == msg.adapter_uri

    candidate = await reg.get_version(registry_conn, version)
    assert candidate is not None and candidate.status == "candidate" and "candidate" in candidate.aliases
    assert candidate.job_id == job_id and candidate.dataset_id == dataset_id and candidate.adapter_uri == msg.adapter_uri
    assert candidate.gguf("Q8_0").sha256 == next(f["sha256"] for f in done["files"] if f["quantization"] == "Q8_0")
    assert candidate.lineage["source_run_ids"] == run_ids
    assert candidate.lineage["training_job_id"] == job_id
    assert candidate.lineage["dataset_manifest_uri"] == f"s3://{bucket}/datasets/{dataset_id}/v1/manifest.json"
    assert (await reg.get_aliases(registry_conn))["production"] == reg.BASE_VERSION  # the gate decides that

    metrics = httpx.get(exporter.url + "/metrics", timeout=5).text
    assert 'exporter_exports_total{outcome="completed"} 1.0' in metrics
    assert 'exporter_export_stage_duration_seconds_count{stage="quantize"}' in metrics
    size = re.search(r'^exporter_gguf_size_bytes\{quantization="Q8_0"\} (\S+)$', metrics, re.M)
    assert size and float(size.group(1)) == candidate.gguf("Q8_0").size_bytes, metrics
    detailed = await eventually(lambda: httpx.get(exporter.url + "/health/detailed", timeout=5).json()
                                .get("last_export"), 15, "the last export in /health/detailed")
    assert detailed["job_id"] == job_id and detailed["status"] == "completed"

    await bus.publish(msg)  # a redelivered training.completed exports nothing again
    await eventually(lambda: "duplicate delivery ignored" in exporter.log_text(), 15, "the duplicate to be seen")
    assert len(bus.of("export.completed.v1", job_id=job_id)) == 1


async def test_a_training_job_whose_adapter_is_gone_fails_with_export_failed(
    bus: Bus, exporter_env: ExporterEnv, registry_conn: asyncpg.Connection
) -> None:
    job_id = new_id()
    msg = TrainingCompleted.create(correlation_id=new_id(), job_id=job_id, dataset_id="ds-none", base_model="bundled",
                                   adapter_uri=f"s3://{exporter_env.bucket}/training/{job_id}/adapter/")
    await bus.publish(msg)
    (failed,) = await eventually(lambda: bus.of("export.failed.v1", job_id=job_id), 60, "export.failed")
    assert "nothing stored under" in failed["reason"]
    assert await reg.get_version(registry_conn, f"gemma3-270m-{job_id[:8]}") is None


async def test_a_training_completed_without_an_s3_adapter_is_dead_lettered(
    bus: Bus, exporter: ServiceProcess, registry_conn: asyncpg.Connection
) -> None:
    msg = TrainingCompleted.create(correlation_id=new_id(), job_id=new_id(), dataset_id="ds", base_model="bundled",
                                   adapter_uri="/home/someone/adapter")
    await bus.publish(msg)
    dead = await eventually(lambda: bus.dead_letters("exporter.training.completed.v1"), 30, "the message in the DLQ")
    assert [d["job_id"] for d in dead] == [msg.job_id]
    await eventually(lambda: msg.envelope.message_id in exporter.log_text(), 10, "the dead-letter log line")
    line = next(x for x in exporter.log_text().splitlines() if msg.envelope.message_id in x and "dead-letter" in x)
    assert "is not an s3:// URI" in line
    count = await registry_conn.fetchval("SELECT count(*) FROM exporter.export_jobs WHERE job_id = $1", msg.job_id)
    assert count == 0


async def test_a_job_whose_owner_died_is_taken_over_when_its_lease_expires(
    bus: Bus, registry_conn: asyncpg.Connection, exporter_env: ExporterEnv
) -> None:
    """A row as a crashed instance leaves it: running, leased to a dead owner, lease expired. The
    running service claims it and carries it to an outcome (here: the adapter is gone → failed)."""
    job_id = new_id()
    msg = TrainingCompleted.create(correlation_id=new_id(), job_id=job_id, dataset_id="ds", base_model="bundled",
                                   adapter_uri=f"s3://{exporter_env.bucket}/training/{job_id}/adapter/")
    await registry_conn.execute(
        """INSERT INTO exporter.export_jobs (job_id, version, message_id, correlation_id, status, request, attempts,
                                             lease_owner, lease_expires_at, started_at)
           VALUES ($1, $2, $3, $4, 'running', $5::jsonb, 1, 'exporter-dead:0000', now() - interval '1 second',
                   now() - interval '1 minute')""",
        job_id, f"gemma3-270m-{job_id[:8]}", msg.envelope.message_id, msg.envelope.correlation_id,
        msg.model_dump_json(),
    )
    (failed,) = await eventually(lambda: bus.of("export.failed.v1", job_id=job_id), 60, "the taken-over job's outcome")
    assert "nothing stored under" in failed["reason"]
    row = await registry_conn.fetchrow("SELECT status, lease_owner FROM exporter.export_jobs WHERE job_id = $1", job_id)
    assert row["status"] == "failed" and row["lease_owner"] is None
