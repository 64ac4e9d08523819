"""Scoring the bundled Gemma 3 270M GGUF (loaded through modelkit.llama) on a few bfcl-dev items:
one load, greedy answers in the runner's format, verdicts for every item, deterministic."""

from __future__ import annotations

import json

import pytest

from evalkit import ast_checker
from evalkit.scoring import GENERATION_ERROR, GgufModel, answer_item, evaluate
from evalkit.suites import Suite, load_suite
from modelkit.base_model import bundled_gguf_path
from tests.harness import BFCL_DIR

pytestmark = pytest.mark.slow

MAX_TOKENS = 48


@pytest.fixture(scope="module")
def model():
    m = GgufModel.load(bundled_gguf_path(), n_ctx=2048)
    try:
        yield m
    finally:
        m.close()


@pytest.fixture(scope="module")
def suites() -> list[Suite]:
    simple = load_suite(BFCL_DIR / "simple.jsonl").limited(2)
    irrelevance = load_suite(BFCL_DIR / "irrelevance.jsonl").limited(1)
    return [simple, irrelevance, Suite("json", "json_validity"), Suite("latency", "latency")]


def test_the_bundled_model_is_scored_on_bfcl_items(model, suites):
    seen = []
    result = evaluate(model, suites, max_tokens=MAX_TOKENS, progress=seen.append)
    assert [p.done for p in seen] == [1, 2, 3]
    assert len(result.items) == 3
    for item in result.items:
        assert item.code in (*ast_checker.REASON_CODES, GENERATION_ERROR)
        assert item.code != GENERATION_ERROR, item.detail
        assert item.seconds > 0
    assert any(item.output.strip() for item in result.items)  # the model did answer
    for name in ("simple", "irrelevance"):
        assert 0.0 <= result.scores[name].score <= 1.0
        assert result.scores[name].details["items"] == len(suites[0 if name == "simple" else 1].items)
    assert 0.0 <= result.scores["json"].score <= 1.0
    latency = result.scores["latency"]
    assert 0 < latency.details["p50_s"] <= latency.details["p95_s"] == latency.score


def test_answers_are_greedy_and_repeatable(model, suites):
    item = suites[0].items[0]
    first = answer_item(model, "simple", item, MAX_TOKENS)
    second = answer_item(model, "simple", item, MAX_TOKENS)
    assert (first.output, first.code) == (second.output, second.code)


def test_a_prompt_longer_than_the_context_is_a_generation_error():
    item = json.loads((BFCL_DIR / "parallel_multiple.jsonl").read_text().splitlines()[0])
    small = GgufModel.load(bundled_gguf_path(), n_ctx=256)
    try:
        result = answer_item(small, "pm", load_suite_item(item), MAX_TOKENS)
    finally:
        small.close()
    assert result.code == GENERATION_ERROR and "context" in result.detail


def load_suite_item(raw: dict) -> dict:
    from evalkit.suites import normalize_item

    return normalize_item(raw, "test")


def test_the_command_line_scores_the_bundled_model_and_writes_a_report(tmp_path, capsys):
    from evalkit.cli import main

    report = tmp_path / "report.json"
    code = main(["score", "bundled", str(BFCL_DIR / "simple.jsonl"), "--max-items", "1", "--max-tokens", "16",
                 "--n-ctx", "2048", "--report", str(report)])
    assert code == 0
    assert "simple" in capsys.readouterr().out
    doc = json.loads(report.read_text())
    assert list(doc["scores"]) == ["simple"] and len(doc["items"]) == 1
    assert doc["items"][0]["code"] in ast_checker.REASON_CODES
