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


# --------------------------------------------------------------------------- per category

CATEGORY_POLICY = GatePolicy(primary="bfcl", threshold=0.0, rules={"bfcl": SuiteRule("ast", 0.02)},
                             min_category_items=10)


def by_category(**categories: tuple[float, int]) -> Score:
    """A suite score from (score, items) per category; the total is the item-weighted mean."""
    items = sum(n for _, n in categories.values())
    total = sum(s * n for s, n in categories.values()) / items
    return Score(total, {c: s for c, (s, _) in categories.items()},
                 {"items": items, "category_items": {c: n for c, (_, n) in categories.items()}})


def test_a_candidate_that_drops_one_category_beyond_tolerance_is_refused_while_its_total_rises():
    base = by_category(simple=(0.5, 20), parallel=(0.6, 20), irrelevance=(0.9, 20))
    cand = by_category(simple=(0.9, 20), parallel=(0.9, 20), irrelevance=(0.5, 20))
    assert cand.score > base.score + 0.1  # the suite as a whole rises
    result = decide({"bfcl": cand}, {"bfcl": base}, CATEGORY_POLICY)
    assert not result.passed
    failed = [r for r in result.reasons if r.startswith("FAIL")]
    assert failed == ["FAIL bfcl category 'irrelevance': 0.5000 regresses from production 0.9000 on 20 items by "
                      "0.4000, beyond the category tolerance 0.0200"]
    assert any(r.startswith("ok bfcl:") for r in result.reasons)  # the suite-level check itself passes
    (bad,) = result.failed_categories
    assert (bad.suite, bad.category, bad.candidate, bad.baseline, bad.items, bad.tolerance, bad.gated) == (
        "bfcl", "irrelevance", 0.5, 0.9, 20, 0.02, True)
    assert {c.category for c in result.categories} == {"simple", "parallel", "irrelevance"}


def test_a_category_with_fewer_items_than_the_minimum_is_reported_and_not_gated():
    base = by_category(simple=(0.5, 20), irrelevance=(1.0, 4))
    cand = by_category(simple=(0.8, 20), irrelevance=(0.0, 4))  # 4/4 → 0/4, but only four items
    result = decide({"bfcl": cand}, {"bfcl": base}, CATEGORY_POLICY)
    assert result.passed, result.reasons
    (line,) = [r for r in result.reasons if "'irrelevance'" in r]
    assert line == ("ok bfcl category 'irrelevance': 4 items, fewer than 10: not gated "
                    "(0.0000 vs production 1.0000)")
    assert [c.gated for c in result.categories if c.category == "irrelevance"] == [False]
    stricter = GatePolicy("bfcl", 0.0, CATEGORY_POLICY.rules, min_category_items=4)
    assert not decide({"bfcl": cand}, {"bfcl": base}, stricter).passed  # at the minimum it counts


def test_a_category_loss_within_its_tolerance_passes_and_the_category_tolerance_defaults_to_the_suites():
    base = by_category(simple=(0.80, 50), multiple=(0.60, 50))
    cand = by_category(simple=(0.80, 50), multiple=(0.58, 50))
    assert decide({"bfcl": cand}, {"bfcl": base}, CATEGORY_POLICY).passed  # 0.02 lost, tolerance 0.02
    strict = GatePolicy("bfcl", 0.0, {"bfcl": SuiteRule("ast", 0.02, category_tolerance=0.0)})
    result = decide({"bfcl": cand}, {"bfcl": base}, strict)
    assert not result.passed
    assert any(r.startswith("FAIL bfcl category 'multiple'") and "category tolerance 0.0000" in r
               for r in result.reasons)
    loose = GatePolicy("bfcl", 0.0, {"bfcl": SuiteRule("ast", 0.0, category_tolerance=0.5)})
    worse = by_category(simple=(0.80, 50), multiple=(0.30, 50))
    result = decide({"bfcl": worse}, {"bfcl": base}, loose)
    assert [r.split(":")[0] for r in result.reasons if r.startswith("FAIL")] == ["FAIL bfcl"]  # the suite, not it


def test_a_category_production_scored_that_the_candidate_lacks_fails_when_large_enough():
    base = by_category(simple=(0.5, 20), parallel=(0.5, 20))
    cand = Score(0.9, {"simple": 0.9}, {"category_items": {"simple": 20}})
    result = decide({"bfcl": cand}, {"bfcl": base}, CATEGORY_POLICY)
    assert not result.passed
    assert any(r.startswith("FAIL bfcl category 'parallel'") and "the candidate none" in r for r in result.reasons)


def test_categories_production_never_scored_cannot_regress_and_unknown_counts_are_not_gated():
    cand = by_category(simple=(0.9, 20), parallel=(0.3, 20))
    base = Score(0.5, {"simple": 0.5})  # cached before counts were recorded, without parallel items
    result = decide({"bfcl": cand}, {"bfcl": base}, CATEGORY_POLICY)
    assert result.passed
    assert [c.category for c in result.categories] == ["simple"]  # its count comes from the candidate
    assert result.categories[0].items == 20
    counted_nowhere = decide({"bfcl": Score(0.6, {"simple": 0.0})}, {"bfcl": base}, CATEGORY_POLICY)
    assert counted_nowhere.passed
    assert any("an unknown number of items" in r for r in counted_nowhere.reasons)


def test_only_item_suites_are_gated_per_category():
    policy = GatePolicy("bfcl", 0.0, {"bfcl": SuiteRule("ast", 0.02), "json": SuiteRule("json_validity", 0.05)})
    json_base = Score(0.9, {"simple": 1.0}, {"category_items": {"simple": 30}})
    json_cand = Score(0.9, {"simple": 0.5}, {"category_items": {"simple": 30}})
    result = decide({"bfcl": Score(0.6), "json": json_cand}, {"bfcl": Score(0.6), "json": json_base}, policy)
    assert result.passed and result.categories == []


def test_the_category_settings_override_the_suite_headers():
    suites = [Suite("a", "ast", items=({"id": "x"},), tolerance=0.1, category_tolerance=0.2, primary=True),
              Suite("b", "regression", source="candidate_dataset", tolerance=0.05),
              Suite("lat", "latency")]
    p = policy_for(suites)
    assert p.min_category_items == 10
    assert p.rules["a"].category_limit == 0.2 and p.rules["b"].category_limit == 0.05
    assert p.rules["lat"].category_tolerance is None
    o = policy_for(suites, category_tolerance=0.0, min_category_items=3)
    assert o.min_category_items == 3
    assert o.rules["a"].category_limit == 0.0 and o.rules["b"].category_limit == 0.0
