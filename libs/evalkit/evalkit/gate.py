"""The promotion gate: a pure decision over candidate and production scores.

Pass iff
- the candidate reaches the absolute threshold on the primary suite, and
- no suite regresses beyond its tolerance against production: for scores where higher is
  better (ast, regression, json_validity) `candidate >= baseline - tolerance` (points of the
  score); for latency (seconds, lower is better) `candidate <= baseline * (1 + tolerance)`, and
- no category of an item suite (ast, regression: the items' `category`, e.g. BFCL's simple,
  multiple, parallel, parallel_multiple, irrelevance) regresses beyond its category tolerance,
  when the category has at least `min_category_items` items: a candidate that gains on the
  suite as a whole while it loses one kind of task is refused. A smaller category is reported
  and not gated (a single item would swing its score by more than any sensible tolerance).

A suite production has no score for (new suite, empty regression source) cannot regress; a
suite the candidate has no score for while production has one fails the gate. The same holds
per category.

Per-category scores are a result's `per_category`; their item counts are
`details["category_items"]` (evalkit.scoring.accuracy writes both; production's cached scores
carry them). Both sides are scored on the same items; where only one side knows the counts
(a score cached before counts were recorded), that side's counts are used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .scoring import CATEGORY_ITEMS
from .suites import GENERATIVE, LATENCY, Suite, primary_suite


@dataclass(frozen=True)
class SuiteRule:
    kind: str
    tolerance: float
    category_tolerance: float | None = None  # per category; None: the suite's tolerance

    @property
    def category_limit(self) -> float:
        return self.tolerance if self.category_tolerance is None else self.category_tolerance


DEFAULT_MIN_CATEGORY_ITEMS = 10


@dataclass(frozen=True)
class GatePolicy:
    primary: str
    threshold: float
    rules: Mapping[str, SuiteRule] = field(default_factory=dict)  # per suite name
    min_category_items: int = DEFAULT_MIN_CATEGORY_ITEMS  # smaller categories are not gated


@dataclass(frozen=True)
class CategoryCheck:
    """One category of one suite, as the gate judged it (for reports and machines)."""

    suite: str
    category: str
    candidate: float | None
    baseline: float
    items: int | None
    tolerance: float
    gated: bool  # False: fewer than min_category_items items (or their number unknown)
    passed: bool

    def as_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "category": self.category, "candidate": self.candidate,
                "baseline": self.baseline, "items": self.items, "tolerance": self.tolerance,
                "gated": self.gated, "passed": self.passed}


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reasons: list[str]  # every check, passed or not, one line each
    categories: list[CategoryCheck] = field(default_factory=list)

    @property
    def failed_categories(self) -> list[CategoryCheck]:
        return [c for c in self.categories if not c.passed]


@dataclass(frozen=True)
class Score:
    """What the gate needs of a suite's result (evalkit.scoring.SuiteResult, contracts.SuiteScore and
    the evaluator's cached scores fit): the score, and for per-category checks `per_category` and
    `details["category_items"]`."""

    score: float
    per_category: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def decide(candidate: Mapping[str, object], baseline: Mapping[str, object], policy: GatePolicy) -> GateResult:
    """`candidate` / `baseline`: suite name -> object with a `score` attribute (and, for the
    per-category checks, `per_category` and `details`)."""
    reasons: list[str] = []
    categories: list[CategoryCheck] = []
    passed = True
    primary = candidate.get(policy.primary)
    if primary is None:
        passed = False
        reasons.append(f"FAIL {policy.primary}: the primary suite has no candidate score")
    else:
        value = _score(primary)
        if value >= policy.threshold:
            reasons.append(f"ok {policy.primary}: {value:.4f} reaches the threshold {policy.threshold:.4f}")
        else:
            passed = False
            reasons.append(f"FAIL {policy.primary}: {value:.4f} is below the threshold {policy.threshold:.4f}")
    for name, rule in policy.rules.items():
        cand, base = candidate.get(name), baseline.get(name)
        if base is None:
            reasons.append(f"ok {name}: production has no score, nothing to regress from")
            continue
        if cand is None:
            passed = False
            reasons.append(f"FAIL {name}: production has a score, the candidate none")
            continue
        c, b = _score(cand), _score(base)
        if rule.kind == LATENCY:
            limit = b * (1.0 + rule.tolerance)
            if c <= limit:
                reasons.append(f"ok {name}: {c:.3f}s within {limit:.3f}s (production {b:.3f}s +{rule.tolerance:.0%})")
            else:
                passed = False
                reasons.append(f"FAIL {name}: {c:.3f}s slower than {limit:.3f}s "
                               f"(production {b:.3f}s +{rule.tolerance:.0%})")
            continue
        floor = b - rule.tolerance
        if c >= floor:
            reasons.append(f"ok {name}: {c:.4f} vs production {b:.4f} (tolerance {rule.tolerance:.4f})")
        else:
            passed = False
            reasons.append(f"FAIL {name}: {c:.4f} regresses from production {b:.4f} "
                           f"beyond the tolerance {rule.tolerance:.4f}")
        if rule.kind in GENERATIVE:
            for check in category_checks(name, rule, cand, base, policy.min_category_items):
                categories.append(check)
                reasons.append(_category_reason(check, policy.min_category_items))
                passed = passed and check.passed
    return GateResult(passed, reasons, categories)


def category_checks(suite: str, rule: SuiteRule, candidate: object, baseline: object,
                    min_items: int) -> list[CategoryCheck]:
    """Every category production has a score on, in name order."""
    cand_scores, base_scores = _per_category(candidate), _per_category(baseline)
    cand_items, base_items = _category_items(candidate), _category_items(baseline)
    tolerance = rule.category_limit
    out = []
    for category in sorted(base_scores):
        b = base_scores[category]
        c = cand_scores.get(category)
        counts = [n for n in (cand_items.get(category), base_items.get(category)) if n is not None]
        items = min(counts) if counts else None
        gated = items is not None and items >= min_items
        ok = not gated or (c is not None and c >= b - tolerance)
        out.append(CategoryCheck(suite, category, c, b, items, tolerance, gated, ok))
    return out


def _category_reason(check: CategoryCheck, min_items: int) -> str:
    where = f"{check.suite} category {check.category!r}"
    c, b, n, t = check.candidate, check.baseline, check.items, check.tolerance
    if not check.gated:
        shown = "an unknown number of items" if n is None else f"{n} item{'s' if n != 1 else ''}"
        scores = f"{c:.4f} vs production {b:.4f}" if c is not None else f"production {b:.4f}, the candidate none"
        return f"ok {where}: {shown}, fewer than {min_items}: not gated ({scores})"
    if c is None:
        return f"FAIL {where}: production has a score ({b:.4f} on {n} items), the candidate none"
    if check.passed:
        return f"ok {where}: {c:.4f} vs production {b:.4f} on {n} items (category tolerance {t:.4f})"
    return (f"FAIL {where}: {c:.4f} regresses from production {b:.4f} on {n} items by {b - c:.4f}, "
            f"beyond the category tolerance {t:.4f}")


def _score(result: object) -> float:
    return float(getattr(result, "score"))  # noqa: B009 - any result type with a score


def _per_category(result: object) -> dict[str, float]:
    return {str(k): float(v) for k, v in (getattr(result, "per_category", None) or {}).items()}


def _category_items(result: object) -> dict[str, int]:
    details = getattr(result, "details", None) or {}
    counts = details.get(CATEGORY_ITEMS) if isinstance(details, Mapping) else None
    return {str(k): int(v) for k, v in (counts or {}).items()}


DEFAULT_TOLERANCE = 0.02  # score points a suite may lose against production
DEFAULT_LATENCY_TOLERANCE = 0.5  # latency may grow by half (shared CPUs are noisy)


def policy_for(suites: Sequence[Suite], *, threshold: float | None = None, tolerance: float | None = None,
               latency_tolerance: float | None = None, category_tolerance: float | None = None,
               min_category_items: int | None = None) -> GatePolicy:
    """The gate for these suites. A value given here (the service's settings) overrides the suite
    headers; without either: threshold 0, tolerance DEFAULT_TOLERANCE / DEFAULT_LATENCY_TOLERANCE,
    the category tolerance that of its suite, DEFAULT_MIN_CATEGORY_ITEMS."""
    main = primary_suite(suites)
    rules = {}
    for s in suites:
        if s.kind == LATENCY:
            rules[s.name] = SuiteRule(s.kind, _first(latency_tolerance, s.tolerance, DEFAULT_LATENCY_TOLERANCE))
            continue
        per_category = category_tolerance if category_tolerance is not None else s.category_tolerance
        rules[s.name] = SuiteRule(s.kind, _first(tolerance, s.tolerance, DEFAULT_TOLERANCE),
                                  float(per_category) if per_category is not None else None)
    return GatePolicy(main.name, _first(threshold, main.threshold, 0.0), rules,
                      DEFAULT_MIN_CATEGORY_ITEMS if min_category_items is None else min_category_items)


def _first(*values: float | None) -> float:
    return next(float(v) for v in values if v is not None)
