"""The canary judge (decision 0020): live outcomes of the candidate against production's over
the same time, and a verdict.

Each arm is what the log-miner recorded since the canary started, per model version: runs,
runs that made a tool call and how many of them made only valid calls, failures (a primary
taxonomy label that is not a success), runs with negative feedback, and the median run time.

The stated test: a one-sided two-proportion z-test (pooled standard error) at `alpha` for each
of "the candidate calls tools in a smaller share of its runs", "its valid-call ratio is lower",
"its failure ratio is higher", "its negative-feedback ratio is higher"; and the candidate's
median run time against production's times `latency_tolerance`. Nothing is decided before both
arms have `min_samples` finished runs. Then:

- any of those tests says worse → **rollback**, with the tests that fired;
- otherwise, when the candidate is non-inferior on valid calls (both arms with `min_samples`
  runs that made calls, and the lower bound of the one-sided 1 − alpha Newcombe score interval
  of candidate − production above −`margin`; where neither arm made a call, the failure ratio
  is compared the same way) → **promote**;
- otherwise wait for more runs, up to `max_duration_s` after the start; then **rollback**
  (the canary did not show the candidate is at least as good within its time).

`alpha` holds per look: the judge looks again at every interval as the arms grow, so the
chance of a wrong verdict over a whole canary is higher than alpha (a sequential test would
bound it; the minimum sample and the margin are the guard here).

A/B mode uses the same report and never acts.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Decision = Literal["promote", "rollback", "wait"]


@dataclass(frozen=True)
class Arm:
    version: str
    runs: int = 0
    call_runs: int = 0  # runs with at least one tool call
    valid_call_runs: int = 0  # of those, runs whose every call was valid
    failures: int = 0
    negative_feedback: int = 0
    median_ms: float | None = None
    labels: dict[str, int] = field(default_factory=dict)

    @property
    def valid_call_ratio(self) -> float | None:
        return self.valid_call_runs / self.call_runs if self.call_runs else None

    @property
    def failure_ratio(self) -> float | None:
        return self.failures / self.runs if self.runs else None

    @property
    def negative_feedback_ratio(self) -> float | None:
        return self.negative_feedback / self.runs if self.runs else None

    def doc(self) -> dict[str, Any]:
        return {**asdict(self), "valid_call_ratio": self.valid_call_ratio, "failure_ratio": self.failure_ratio,
                "negative_feedback_ratio": self.negative_feedback_ratio}


@dataclass(frozen=True)
class JudgeRules:
    alpha: float = 0.05
    margin: float = 0.05  # non-inferiority margin on the valid-call ratio (absolute)
    latency_tolerance: float = 1.5  # the candidate's median run time may be at most this times production's


@dataclass(frozen=True)
class Test:
    """One comparison: candidate − production, its z statistic and the one-sided p-value that
    the candidate is worse."""

    metric: str
    candidate: float | None
    production: float | None
    difference: float | None
    z: float | None
    p_worse: float | None
    worse: bool

    def doc(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str
    tests: tuple[Test, ...]
    candidate: Arm
    production: Arm

    def report(self, elapsed_s: float) -> dict[str, Any]:
        return {"decision": self.decision, "reason": self.reason, "elapsed_s": round(elapsed_s, 1),
                "candidate": self.candidate.doc(), "production": self.production.doc(),
                "tests": [t.doc() for t in self.tests]}


_NORMAL = NormalDist()


def _normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 1.0 - _NORMAL.cdf(z)


def proportion_test(metric: str, x_c: int, n_c: int, x_p: int, n_p: int, *, higher_is_worse: bool,
                    alpha: float) -> Test:
    """One-sided pooled two-proportion z-test that the candidate's share x_c/n_c is worse."""
    if n_c == 0 or n_p == 0:
        return Test(metric, x_c / n_c if n_c else None, x_p / n_p if n_p else None, None, None, None, False)
    p_c, p_p = x_c / n_c, x_p / n_p
    pooled = (x_c + x_p) / (n_c + n_p)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_p))
    diff = p_c - p_p
    z = diff / se if se > 0 else 0.0  # se 0: both arms all 0 or all 1, so no difference
    # The one-sided p-value of "the candidate is worse": P(Z >= z) where higher is worse, else P(Z <= z).
    p_worse = _normal_sf(z) if higher_is_worse else _normal_sf(-z)
    return Test(metric, p_c, p_p, diff, z, p_worse, p_worse < alpha)


def wilson(x: int, n: int, z: float) -> tuple[float, float]:
    """The Wilson score interval of x/n at normal quantile z (n > 0)."""
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def non_inferior(x_c: int, n_c: int, x_p: int, n_p: int, *, margin: float, alpha: float,
                 higher_is_better: bool = True) -> bool:
    """Whether the lower bound of the one-sided 1 − alpha interval of the candidate's advantage
    exceeds −margin. The interval is Newcombe's hybrid score interval (from each arm's Wilson
    interval), which keeps its width at ratios of 0 or 1 where the Wald interval collapses."""
    if n_c == 0 or n_p == 0:
        return False
    if not higher_is_better:  # the advantage of fewer failures is the advantage of more successes
        x_c, x_p = n_c - x_c, n_p - x_p
    z = _NORMAL.inv_cdf(1 - alpha)
    p_c, p_p = x_c / n_c, x_p / n_p
    low_c, _ = wilson(x_c, n_c, z)
    _, high_p = wilson(x_p, n_p, z)
    lower = (p_c - p_p) - math.sqrt((p_c - low_c) ** 2 + (high_p - p_p) ** 2)
    return lower > -margin


def judge(candidate: Arm, production: Arm, *, min_samples: int, elapsed_s: float, max_duration_s: float,
          rules: JudgeRules = JudgeRules()) -> Verdict:
    a = rules.alpha
    tests = (
        proportion_test("call_ratio", candidate.call_runs, candidate.runs, production.call_runs, production.runs,
                        higher_is_worse=False, alpha=a),
        proportion_test("valid_call_ratio", candidate.valid_call_runs, candidate.call_runs,
                        production.valid_call_runs, production.call_runs, higher_is_worse=False, alpha=a),
        proportion_test("failure_ratio", candidate.failures, candidate.runs, production.failures, production.runs,
                        higher_is_worse=True, alpha=a),
        proportion_test("negative_feedback_ratio", candidate.negative_feedback, candidate.runs,
                        production.negative_feedback, production.runs, higher_is_worse=True, alpha=a),
        _latency_test(candidate, production, rules.latency_tolerance),
    )

    def verdict(decision: Decision, reason: str) -> Verdict:
        return Verdict(decision, reason, tests, candidate, production)

    enough = candidate.runs >= min_samples and production.runs >= min_samples
    timed_out = elapsed_s >= max_duration_s
    if not enough:
        if timed_out:
            return verdict("rollback", f"time limit ({max_duration_s:.0f}s) reached with {candidate.runs} candidate and "
                                       f"{production.runs} production runs, under the minimum of {min_samples} each")
        return verdict("wait", f"{candidate.runs} candidate and {production.runs} production runs of the "
                               f"{min_samples} each needed")
    worse = [t for t in tests if t.worse]
    if worse:
        return verdict("rollback", "the candidate is worse on live runs: " + "; ".join(_says(t) for t in worse))
    if candidate.call_runs or production.call_runs:
        calls_needed = min(candidate.call_runs, production.call_runs) >= min_samples
        ok = calls_needed and non_inferior(candidate.valid_call_runs, candidate.call_runs,
                                           production.valid_call_runs, production.call_runs, margin=rules.margin,
                                           alpha=a)
        measure = "valid-call ratio"
        if not calls_needed and not timed_out:
            return verdict("wait", f"{candidate.call_runs} candidate and {production.call_runs} production runs with "
                                   f"tool calls of the {min_samples} each needed")
    else:
        ok = non_inferior(candidate.failures, candidate.runs, production.failures, production.runs,
                          margin=rules.margin, alpha=a, higher_is_better=False)
        measure = "failure ratio"
    if ok:
        return verdict("promote", f"the candidate is not worse on any test at alpha {a:g} and its {measure} is "
                                  f"within {rules.margin:g} of production's or better "
                                  f"({candidate.runs} candidate, {production.runs} production runs)")
    if timed_out:
        return verdict("rollback", f"time limit ({max_duration_s:.0f}s) reached and the candidate's {measure} was not "
                                   f"shown within {rules.margin:g} of production's")
    return verdict("wait", f"not worse so far, but the {measure} is not yet shown within {rules.margin:g} of "
                           "production's")


def _latency_test(candidate: Arm, production: Arm, tolerance: float) -> Test:
    c, p = candidate.median_ms, production.median_ms
    if c is None or p is None or p <= 0:
        return Test("median_run_ms", c, p, None, None, None, False)
    return Test("median_run_ms", c, p, c - p, None, None, c > p * tolerance)


def _says(test: Test) -> str:
    if test.metric == "median_run_ms":
        return f"median run time {test.candidate:.0f} ms against production's {test.production:.0f} ms"
    return (f"{test.metric} {test.candidate:.3f} against production's {test.production:.3f} "
            f"(z={test.z:.2f}, p={test.p_worse:.4f})")
