"""`python -m evalkit check`: any BFCL-format file or suite directory is read and its ground truth judged."""

from __future__ import annotations

import json
from pathlib import Path

from evalkit.cli import main
from tests.harness import BFCL_DIR, ROOT

SHIPPED = ROOT / "services" / "evaluator" / "evaluator" / "suites"


def test_check_reads_bfcl_dev_and_the_shipped_suites(capsys):
    assert main(["check", str(BFCL_DIR), str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    assert "simple" in out and "200/200" in out and "tool-calls" in out


def test_check_fails_on_an_item_whose_ground_truth_cannot_pass(tmp_path: Path, capsys):
    item = {"id": "x", "question": [[{"role": "user", "content": "hi"}]],
            "function": [{"name": "f", "parameters": {"type": "dict", "properties": {"a": {"type": "integer"}},
                                                      "required": ["a", "b"]}}],
            "ground_truth": [{"f": {"a": [1]}}]}
    (tmp_path / "s.jsonl").write_text(json.dumps(item) + "\n")
    assert main(["check", str(tmp_path / "s.jsonl")]) == 1
    assert "x: missing_required" in capsys.readouterr().out


def test_a_bad_suite_is_an_error_with_the_reason(tmp_path: Path, capsys):
    (tmp_path / "bad.jsonl").write_text('{"suite": {"kind": "vibes"}}\n')
    assert main(["check", str(tmp_path / "bad.jsonl")]) == 2
    assert "'kind' must be one of" in capsys.readouterr().err


def test_from_dataset_writes_a_val_split_as_a_suite_that_check_accepts(tmp_path: Path, capsys):
    tool = {"type": "function", "function": {"name": "weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    lines = [
        {"messages": [{"role": "user", "content": "Weather in Oslo?"},
                      {"role": "assistant", "content": None,
                       "tool_calls": [{"id": "1", "name": "weather", "arguments": {"city": "Oslo"}}]}],
         "tools": [tool], "meta": {"run_ids": ["r1"]}},
        {"messages": [{"role": "user", "content": "A joke?"}, {"role": "assistant", "content": "No."}],
         "tools": [tool], "meta": {}},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}], "tools": []},
    ]
    val = tmp_path / "val.jsonl"
    val.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "suite.jsonl"
    assert main(["from-dataset", str(val), "-o", str(out)]) == 0
    assert "2 items of 3 examples {'irrelevance': 1, 'simple': 1}; skipped {'no_tools': 1}" in capsys.readouterr().err
    assert main(["check", str(out)]) == 0
    checked = capsys.readouterr().out
    assert "dataset-val" in checked and "ground truth passes 2/2" in checked
    (tmp_path / "empty.jsonl").write_text(json.dumps(lines[2]) + "\n")
    assert main(["from-dataset", str(tmp_path / "empty.jsonl")]) == 1  # nothing usable
    assert main(["from-dataset", str(tmp_path / "missing.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
