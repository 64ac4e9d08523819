"""Version names, the export process's event lines, run ids from dataset lines."""

from __future__ import annotations

import pytest

from exporter.domain import (
    ExportOutput,
    Failed,
    Stage,
    base_family,
    parse_event,
    source_run_ids_from_lines,
    version_name,
)


def test_version_name_is_the_base_family_and_the_job_id_prefix() -> None:
    job = "3f2a9c1e-1111-2222-3333-444455556666"
    assert version_name("bundled", job) == "gemma3-270m-3f2a9c1e"
    assert version_name("gemma3-270m-q4_k_m@base", job) == version_name("bundled", job)
    assert version_name("/models/Qwen2.5-0.5B-Instruct-Q4_K_M.gguf", job) == "qwen2-5-0-5b-instruct-3f2a9c1e"


def test_short_or_odd_job_ids_still_give_a_stable_safe_name() -> None:
    a, b = version_name("bundled", "x/1"), version_name("bundled", "x/1")
    assert a == b and a.startswith("gemma3-270m-") and len(a.rsplit("-", 1)[1]) == 8
    assert version_name("bundled", "x/2") != a
    assert base_family("/") == "model"


def test_parse_event_reads_stage_completed_and_failed_lines() -> None:
    assert parse_event({"event": "stage", "name": "merge", "fraction": 0.0}) == Stage("merge", info={"fraction": 0.0})
    assert parse_event({"event": "stage", "name": "resolve_base", "done": True, "seconds": 2}) == Stage(
        "resolve_base", True, 2.0)
    out = parse_event({"event": "completed", "result": {
        "version": "v", "f16_path": "/o/v.F16.gguf", "quant_paths": {"Q4_K_M": "/o/v.Q4_K_M.gguf"},
        "modelfile_path": "/o/Modelfile", "sha256": {"v.Q4_K_M.gguf": "ab"},
        "parity": {"mismatches": 0, "max_logit_diff": float("inf")},
        "stage_seconds": {"merge": 1.5, "bad": float("nan")}}})
    assert isinstance(out, ExportOutput) and out.quant_paths == {"Q4_K_M": "/o/v.Q4_K_M.gguf"}
    assert out.stage_seconds == {"merge": 1.5}
    assert out.parity == {"mismatches": 0, "max_logit_diff": None}  # JSONB takes no inf/NaN
    failed = parse_event({"event": "failed", "reason": "ParityError: diverged", "details": {"prompt": 2}})
    assert isinstance(failed, Failed) and failed.permanent
    assert failed.describe() == 'ParityError: diverged | details: {"prompt": 2}'
    assert parse_event({"event": "something-new"}) is None
    with pytest.raises(KeyError):
        parse_event({"event": "completed"})


def test_source_run_ids_come_from_line_meta_in_first_seen_order() -> None:
    lines = [{"meta": {"run_ids": ["r2", "r1"]}}, {"meta": {}}, {"messages": []}, {"meta": {"run_ids": ["r1", "r3"]}}]
    assert source_run_ids_from_lines(lines) == ["r2", "r1", "r3"]
