"""Scores of a replay and the before/after table."""

from __future__ import annotations

from rich.console import Console

from loopdemo.judge import Response, Verdict
from loopdemo.report import Outcome, comparison_table, percentile, stage_table, summarise
from loopdemo.tasks import load_tasks

TASKS = load_tasks()


def _outcome(i: int, correct: bool, latency: float, *, invalid: int = 0, calls: int = 1, version="v1",
             status="completed") -> Outcome:
    response = Response(calls=[{"name": "x", "arguments": {}, "error": None}] * calls, invalid=invalid,
                        status=status, model_version=version)
    return Outcome(TASKS[i], f"run{i}", response, Verdict(correct), latency)


def test_percentile_is_nearest_rank():
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 21)], 95) == 19.0


def test_summary_counts_per_category_validity_and_latency_of_completed_runs():
    simple = [i for i, t in enumerate(TASKS) if t.category == "simple"][:2]
    irrelevant = [i for i, t in enumerate(TASKS) if t.category == "irrelevance"][:2]
    outcomes = [
        _outcome(simple[0], True, 1.0),
        _outcome(simple[1], False, 3.0, invalid=1),
        _outcome(irrelevant[0], True, 2.0, calls=0),
        _outcome(irrelevant[1], False, 99.0, calls=0, status="failed", version=None),
    ]
    s = summarise(outcomes)
    assert (s.correct, s.total) == (2, 4)
    assert s.per_category == {"simple": (1, 2), "irrelevance": (1, 2)}
    assert s.valid_calls == (1, 2)
    assert s.failed_runs == 1
    assert s.latency_p50 == 2.0 and s.latency_p95 == 3.0
    assert s.model_versions == ("v1",)


def test_the_tables_show_before_after_and_the_change():
    before = summarise([_outcome(0, False, 4.0, version="base"), _outcome(1, False, 4.0, version="base")])
    after = summarise([_outcome(0, True, 1.0, version="new"), _outcome(1, False, 1.0, version="new")])
    console = Console(record=True, width=160)
    console.print(comparison_table(before, after))
    console.print(stage_table([("training", 125.0, ""), ("export", None, "skipped")]))
    text = console.export_text()
    assert "0/2 (0%)" in text and "1/2 (50%)" in text and "+50 pts" in text
    assert "base" in text and "new" in text
    assert "2 min 05.0 s" in text and "total" in text
