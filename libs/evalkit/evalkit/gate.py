"""The promotion gate: a pure decision over candidate and production scores.

Pass iff
- the candidate reaches the absolute threshold on the primary suite, and
- no suite regresses beyond its tolerance against production: for scores where higher is
  better (ast, regression, json_validity) `candidate >= baseline - tolerance` (points of the
  score); for latency (seconds, lower is better) `candidate <= baseline * (1 + tolerance)`.

A suite production has no score for (new suite, empty regression source) cannot regress; a
suite the candidate has no score for while production has one fails the gate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .suites import LATENCY, Suite, primary_suite


@dataclass(frozen=True)
class SuiteRule:
    kind: str
    tolerance: float


@dataclass(frozen=True)
class GatePolicy:
    primary: str
    threshold: float
    rules: Mapping[str, SuiteRule] = field(default_factory=dict)  # per suite name


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reasons: list[str]  # every check, passed or not, one line each


@dataclass(frozen=True)
class Score:
    """What the gate needs of a suite's result (evalkit.scoring.SuiteResult and contracts.SuiteScore fit)."""

    score: float


def decide(candidate: Mapping[str, object], baseline: Mapping[str, object], policy: GatePolicy) -> GateResult:
    """`candidate` / `baseline`: suite name -> object with a `score` attribute."""
    reasons: list[str] = []
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
    return GateResult(passed, reasons)


def _score(result: object) -> float:
    return float(getattr(result, "score"))  # noqa: B009 - any result type with a score


DEFAULT_TOLERANCE = 0.02  # score points a suite may lose against production
DEFAULT_LATENCY_TOLERANCE = 0.5  # latency may grow by half (shared CPUs are noisy)


def policy_for(suites: Sequence[Suite], *, threshold: float | None = None, tolerance: float | None = None,
               latency_tolerance: float | None = None) -> GatePolicy:
    """The gate for these suites. A value given here (the service's settings) overrides the suite
    headers; without either: threshold 0, tolerance DEFAULT_TOLERANCE / DEFAULT_LATENCY_TOLERANCE."""
    main = primary_suite(suites)
    rules = {}
    for s in suites:
        if s.kind == LATENCY:
            tol = _first(latency_tolerance, s.tolerance, DEFAULT_LATENCY_TOLERANCE)
        else:
            tol = _first(tolerance, s.tolerance, DEFAULT_TOLERANCE)
        rules[s.name] = SuiteRule(s.kind, tol)
    return GatePolicy(main.name, _first(threshold, main.threshold, 0.0), rules)


def _first(*values: float | None) -> float:
    return next(float(v) for v in values if v is not None)
