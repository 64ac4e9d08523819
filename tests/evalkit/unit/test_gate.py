"""The promotion gate: every branch of the decision."""

from __future__ import annotations

from evalkit.gate import GatePolicy, Score, SuiteRule, decide, policy_for
from evalkit.suites import Suite

POLICY = GatePolicy(
    primary="bfcl",
    threshold=0.5,
    rules={"bfcl": SuiteRule("ast", 0.02), "json": SuiteRule("json_validity", 0.05), "speed": SuiteRule("latency", 0.5)},
)
BASELINE = {"bfcl": Score(0.6), "json": Score(0.9), "speed": Score(2.0)}


def scores(**values: float) -> dict[str, Score]:
    return {name: Score(v) for name, v in values.items()}


def test_a_candidate_at_least_as_good_as_production_passes():
    result = decide(scores(bfcl=0.6, json=0.9, speed=2.0), BASELINE, POLICY)
    assert result.passed
    assert all(r.startswith("ok") for r in result.reasons)


def test_the_primary_suite_below_the_threshold_fails_even_without_regression():
    result = decide(scores(bfcl=0.45, json=0.9, speed=2.0), {**BASELINE, "bfcl": Score(0.4)}, POLICY)
    assert not result.passed
    assert any(r.startswith("FAIL bfcl") and "threshold" in r for r in result.reasons)


def test_exactly_the_threshold_passes():
    assert decide(scores(bfcl=0.5, json=0.9, speed=2.0), {**BASELINE, "bfcl": Score(0.5)}, POLICY).passed


def test_a_regression_within_tolerance_passes():
    assert decide(scores(bfcl=0.585, json=0.86, speed=2.0), BASELINE, POLICY).passed


def test_a_regression_beyond_tolerance_on_any_suite_fails():
    result = decide(scores(bfcl=0.9, json=0.8, speed=2.0), BASELINE, POLICY)
    assert not result.passed
    failed = [r for r in result.reasons if r.startswith("FAIL")]
    assert len(failed) == 1 and failed[0].startswith("FAIL json")


def test_the_primary_suite_regressing_beyond_tolerance_fails_although_above_threshold():
    result = decide(scores(bfcl=0.55, json=0.9, speed=2.0), BASELINE, POLICY)
    assert not result.passed
    assert any(r.startswith("FAIL bfcl") and "regresses" in r for r in result.reasons)


def test_latency_tolerance_is_relative():
    assert decide(scores(bfcl=0.6, json=0.9, speed=2.99), BASELINE, POLICY).passed
    slow = decide(scores(bfcl=0.6, json=0.9, speed=3.01), BASELINE, POLICY)
    assert not slow.passed and any(r.startswith("FAIL speed") for r in slow.reasons)


def test_being_faster_is_never_a_regression():
    assert decide(scores(bfcl=0.6, json=0.9, speed=0.1), BASELINE, POLICY).passed


def test_a_suite_production_has_no_score_for_cannot_regress():
    result = decide(scores(bfcl=0.6, json=0.1, speed=2.0), {"bfcl": Score(0.6), "speed": Score(2.0)}, POLICY)
    assert result.passed
    assert any(r.startswith("ok json") and "no score" in r for r in result.reasons)


def test_a_suite_missing_on_the_candidate_side_fails():
    result = decide(scores(bfcl=0.6, speed=2.0), BASELINE, POLICY)
    assert not result.passed
    assert any(r.startswith("FAIL json") for r in result.reasons)


def test_a_missing_primary_score_fails():
    result = decide(scores(json=0.9, speed=2.0), {"json": Score(0.9), "speed": Score(2.0)}, POLICY)
    assert not result.passed
    assert any("primary" in r for r in result.reasons)


def test_policy_takes_overrides_then_suite_headers_then_defaults():
    suites = [
        Suite("a", "ast", items=({"id": "x"},), threshold=0.7, tolerance=0.1),
        Suite("b", "ast", items=({"id": "y"},), primary=True),
        Suite("lat", "latency", tolerance=2.0),
        Suite("json", "json_validity"),
    ]
    p = policy_for(suites)
    assert p.primary == "b" and p.threshold == 0.0
    assert p.rules["a"] == SuiteRule("ast", 0.1)
    assert p.rules["lat"] == SuiteRule("latency", 2.0)
    assert p.rules["json"] == SuiteRule("json_validity", 0.02)
    o = policy_for(suites, threshold=0.3, tolerance=0.0, latency_tolerance=9.0)
    assert o.threshold == 0.3 and o.rules["a"].tolerance == 0.0 and o.rules["lat"].tolerance == 9.0


def test_without_a_primary_flag_the_first_ast_suite_is_primary():
    suites = [Suite("lat", "latency"), Suite("first", "ast", items=({"id": "x"},), threshold=0.4),
              Suite("second", "ast", items=({"id": "y"},))]
    p = policy_for(suites)
    assert (p.primary, p.threshold) == ("first", 0.4)
