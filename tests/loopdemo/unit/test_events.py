"""Following one retrain by its events: ours are recognised, others ignored, failures stop it."""

from __future__ import annotations

from contracts import (
    DatasetBuilt,
    EvaluationCompleted,
    ExportCompleted,
    ExportedFile,
    ExportFailed,
    ModelDeployed,
    ModelPromoted,
    SuiteScore,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    TrainingRequested,
)
from loopdemo.events import LoopTracker, decode

REQ = "req-1"


def _chain(corr: str = REQ, job: str = "job-1", version: str = "gemma3-270m-job1", passed: bool = True):
    return [
        DatasetBuilt.create(correlation_id=corr, dataset_id="ds-1", version=1, train_uri="s3://b/t",
                            val_uri="s3://b/v", manifest_uri="s3://b/m", counts={"train": 30, "val": 0},
                            source_run_ids=["r1", "r2"]),
        TrainingRequested.create(correlation_id=corr, job_id=job, dataset_id="ds-1", train_uri="s3://b/t",
                                 base_model="bundled"),
        TrainingProgress.create(correlation_id=corr, job_id=job, step=5, total_steps=24, loss=1.25),
        TrainingCompleted.create(correlation_id=corr, job_id=job, dataset_id="ds-1", base_model="bundled",
                                 adapter_uri="s3://b/a", steps=24, metrics={"final_loss": 0.4}),
        ExportCompleted.create(correlation_id="other", model_version=version, job_id=job, files=[
            ExportedFile(uri="s3://b/q4.gguf", sha256="ab", size_bytes=1, kind="gguf", quantization="Q4_K_M")]),
        EvaluationCompleted.create(correlation_id="other", evaluation_id="ev-1", job_id=job, candidate=version,
                                   baseline="gemma3-270m-q4_k_m@base", quantization="Q4_K_M" if passed else None,
                                   candidate_scores=[SuiteScore(suite="demo-heldout", score=0.8)],
                                   baseline_scores=[SuiteScore(suite="demo-heldout", score=0.1)], passed=passed,
                                   reasons=[] if passed else ["FAIL demo-heldout: 0.1 is below the threshold 0.5"]),
        ModelPromoted.create(correlation_id="other", model_version=version, job_id=job, evaluation_id="ev-1",
                             adapter_uri="s3://b/a", base_model="bundled"),
        ModelDeployed.create(correlation_id="other", model_version=version, gguf_uri="s3://b/q4.gguf", sha256="ab",
                             previous_version="gemma3-270m-q4_k_m@base"),
    ]


def test_follows_the_whole_chain_by_ids_after_the_correlation_changes():
    tracker = LoopTracker(REQ)
    steps = [tracker.accept(m) for m in _chain()]
    assert all(s is not None for s in steps)
    assert [s.stage for s in steps] == ["dataset", "training", "training", "training", "export", "evaluation",
                                        "promotion", "promotion"]
    assert "step 5/24" in steps[2].text and "loss 1.250" in steps[2].text
    assert tracker.finished and tracker.failure is None
    assert tracker.model_version == "gemma3-270m-job1" and tracker.deployed is not None
    assert tracker.source_run_ids == ["r1", "r2"]


def test_events_of_another_retrain_are_ignored():
    tracker = LoopTracker(REQ)
    for msg in _chain(corr="someone-else", job="job-9", version="gemma3-270m-job9"):
        assert tracker.accept(msg) is None
    assert tracker.job_id is None and not tracker.finished


def test_a_rejected_candidate_ends_the_loop_with_the_gates_reasons():
    tracker = LoopTracker(REQ)
    for msg in _chain(passed=False)[:6]:
        tracker.accept(msg)
    assert tracker.finished
    assert "gate rejected" in tracker.failure and "below the threshold" in tracker.failure


def test_training_and_export_failures_end_the_loop():
    tracker = LoopTracker(REQ)
    for msg in _chain()[:2]:
        tracker.accept(msg)
    step = tracker.accept(TrainingFailed.create(correlation_id="x", job_id="job-1", reason="out of memory"))
    assert step.failed and tracker.failure == "training failed: out of memory"

    tracker = LoopTracker(REQ)
    for msg in _chain()[:4]:
        tracker.accept(msg)
    tracker.accept(ExportFailed.create(correlation_id="x", job_id="job-1", reason="parity mismatch"))
    assert tracker.failure == "export failed: parity mismatch"


def test_decode_reads_followed_keys_and_skips_the_rest():
    msg = _chain()[2]
    assert decode(msg.routing_key, msg.model_dump_json().encode()) == msg
    assert decode("agent.run.step.v1", b"{}") is None
    assert decode(msg.routing_key, b'{"not": "a progress"}') is None
