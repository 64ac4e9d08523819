"""Rules without I/O: the recipe's event lines, completion metrics, storage names, S3 layout."""

from __future__ import annotations

import math

import pytest

from trainer.domain import (
    Checkpoint,
    Completed,
    Failed,
    Progress,
    Started,
    adapter_prefix,
    checkpoint_name,
    checkpoint_prefix,
    completion_metrics,
    parse_event,
    storage_name,
)


def test_parses_every_event_the_recipe_writes() -> None:
    assert parse_event({"event": "started", "start_step": 4, "total_steps": 6, "backend": "peft"}) == Started(
        4, 6, {"backend": "peft"})
    assert parse_event({"event": "progress", "step": 5, "total_steps": 6, "loss": 0.5, "lr": 1e-4,
                        "tokens_per_s": 12.5, "eta_s": 3.0}) == Progress(5, 6, 0.5, 1e-4, 12.5, 3.0)
    assert parse_event({"event": "checkpoint", "step": 4, "path": "/w/ckpt/step-000004"}) == Checkpoint(
        4, "/w/ckpt/step-000004")
    assert parse_event({"event": "completed", "adapter_dir": "/w/adapter", "steps": 6,
                        "metrics": {"train_loss": 0.4, "eval_loss": None}}) == Completed("/w/adapter", 6,
                                                                                         {"train_loss": 0.4})
    assert parse_event({"event": "failed", "reason": "ValueError: bad"}) == Failed("ValueError: bad")


def test_a_progress_line_with_null_or_non_finite_numbers_keeps_only_the_finite_ones() -> None:
    p = parse_event({"event": "progress", "step": 1, "total_steps": 2, "loss": None, "lr": math.inf,
                     "tokens_per_s": True, "eta_s": 1})
    assert p == Progress(1, 2, None, None, None, 1.0)


def test_an_unknown_event_is_ignored_and_a_known_one_without_its_fields_is_malformed() -> None:
    assert parse_event({"event": "something-new", "x": 1}) is None
    with pytest.raises(KeyError):
        parse_event({"event": "progress", "total_steps": 2})


def test_completion_metrics_add_the_names_the_loop_reads() -> None:
    m = completion_metrics({"train_loss": 0.4, "train_tokens_per_s": 90.0, "eval_loss": 0.6, "steps": 6.0},
                           duration_s=123.4567, attempts=2)
    assert m["final_loss"] == 0.4 and m["tokens_per_s"] == 90.0 and m["eval_loss"] == 0.6
    assert m["duration_s"] == 123.457 and m["attempts"] == 2.0


def test_s3_layout_of_a_job() -> None:
    assert checkpoint_prefix("job-1", "step-000020") == "training/job-1/checkpoints/step-000020/"
    assert adapter_prefix("job-1") == "training/job-1/adapter/"
    assert checkpoint_name("s3://b/training/job-1/checkpoints/step-000020/") == "step-000020"
    assert checkpoint_name("/work/job-1/checkpoints/step-000020") == "step-000020"


def test_a_job_id_that_is_not_a_safe_path_component_is_hashed() -> None:
    assert storage_name("job-ds_1.v2") == "job-ds_1.v2"
    for unsafe in ("../etc", "a/b", "", "x" * 200, "a..b"):
        name = storage_name(unsafe)
        assert name.startswith("job-") and "/" not in name and ".." not in name
        assert storage_name(unsafe) == name  # stable
