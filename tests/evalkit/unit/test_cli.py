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
