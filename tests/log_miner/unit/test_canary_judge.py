"""The canary judge (decision 0020): the stated tests on live tallies, and the use case that sends
a verdict once (fakes of the log-miner's own ports)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from contracts import CanaryJudged, utcnow
from log_miner.domain.canary import Arm, judge, non_inferior, proportion_test
from log_miner.service import JudgeCanaries
from modelregistry import Canary
from tests.log_miner.unit.fakes import FakeStore


def arm(version: str, runs: int, valid: int, *, calls: int | None = None, failures: int | None = None,
        negative: int = 0, median_ms: float | None = 100.0) -> Arm:
    calls = runs if calls is None else calls
    return Arm(version, runs=runs, call_runs=calls, valid_call_runs=valid,
               failures=(calls - valid) if failures is None else failures, negative_feedback=negative,
               median_ms=median_ms)


def decide(candidate: Arm, production: Arm, *, min_samples: int = 30, elapsed_s: float = 60,
           max_duration_s: float = 3600):
    return judge(candidate, production, min_samples=min_samples, elapsed_s=elapsed_s, max_duration_s=max_duration_s)


def test_the_z_test_matches_a_worked_example():
    # 20/40 against 36/40: pooled 0.7, se = sqrt(0.7*0.3*(2/40)) = 0.1025, z = -0.4/0.1025 = -3.90
    test = proportion_test("valid_call_ratio", 20, 40, 36, 40, higher_is_worse=False, alpha=0.05)
    assert test.z == pytest.approx(-3.904, abs=1e-3) and test.p_worse == pytest.approx(4.7e-5, rel=0.05)
    assert test.worse
    same = proportion_test("valid_call_ratio", 30, 40, 30, 40, higher_is_worse=False, alpha=0.05)
    assert same.z == 0 and same.p_worse == pytest.approx(0.5) and not same.worse


def test_a_candidate_worse_on_valid_calls_is_rolled_back():
    verdict = decide(arm("cand", 40, 20), arm("prod", 40, 36))
    assert verdict.decision == "rollback" and "valid_call_ratio 0.500 against production's 0.900" in verdict.reason


def test_a_better_candidate_is_promoted():
    verdict = decide(arm("cand", 40, 39), arm("prod", 40, 30))
    assert verdict.decision == "promote" and "40 candidate, 40 production runs" in verdict.reason


def test_nothing_is_decided_under_the_minimum_sample():
    verdict = decide(arm("cand", 10, 0), arm("prod", 40, 40))
    assert verdict.decision == "wait" and "10 candidate and 40 production runs" in verdict.reason


def test_the_time_limit_rolls_back_what_is_not_shown_good_enough():
    short = decide(arm("cand", 10, 10), arm("prod", 40, 40), elapsed_s=3600)
    assert short.decision == "rollback" and "under the minimum of 30" in short.reason
    close = decide(arm("cand", 40, 34), arm("prod", 40, 36))  # not worse at alpha, not shown within the margin
    assert close.decision == "wait"
    assert decide(arm("cand", 40, 34), arm("prod", 40, 36), elapsed_s=3600).decision == "rollback"


def test_negative_feedback_and_latency_each_roll_back():
    feedback = decide(arm("cand", 60, 60, negative=15), arm("prod", 60, 60, negative=1))
    assert feedback.decision == "rollback" and "negative_feedback_ratio" in feedback.reason
    slow = decide(arm("cand", 60, 60, median_ms=900), arm("prod", 60, 60, median_ms=300))
    assert slow.decision == "rollback" and "median run time 900 ms against production's 300 ms" in slow.reason


def test_without_tool_calls_the_failure_ratio_decides():
    verdict = decide(arm("cand", 50, 0, calls=0, failures=0), arm("prod", 50, 0, calls=0, failures=5))
    assert verdict.decision == "promote" and "failure ratio" in verdict.reason


def test_a_few_tool_call_runs_are_not_enough_to_promote():
    # 30 runs each, but the candidate made calls in 2: the minimum sample counts runs with calls too
    # (and the call-ratio test sees that it stopped calling)
    verdict = decide(arm("cand", 30, 2, calls=2, failures=0), arm("prod", 300, 297))
    assert verdict.decision == "rollback" and "call_ratio" in verdict.reason
    few = decide(arm("cand", 60, 20, calls=20, failures=0), arm("prod", 60, 20, calls=20, failures=0))
    assert few.decision == "wait" and "20 candidate and 20 production runs with tool calls" in few.reason


def test_a_perfect_tie_at_the_minimum_does_not_promote_on_a_collapsed_interval():
    # the Wald interval of 30/30 against 30/30 has width 0; Newcombe's score interval does not
    assert decide(arm("cand", 30, 30), arm("prod", 30, 30)).decision == "wait"
    assert decide(arm("cand", 200, 200), arm("prod", 200, 200)).decision == "promote"


def test_non_inferiority_needs_the_interval_above_the_margin():
    # equal at 95 %: Newcombe's lower bound is about -0.055 at n=100 and -0.038 at n=200
    assert not non_inferior(95, 100, 95, 100, margin=0.05, alpha=0.05)
    assert non_inferior(190, 200, 190, 200, margin=0.05, alpha=0.05)
    assert not non_inferior(9, 10, 9, 10, margin=0.05, alpha=0.05)  # too few runs to show it


# ---------------------------------------------------------------------- the use case


class CanaryStore(FakeStore):
    def __init__(self, canary: Canary | None, arms: dict[str, Arm]) -> None:
        super().__init__()
        self.current = canary
        self.arms = arms

    async def running_canary(self):
        return self.current if self.current is not None and self.current.running else None

    async def canary(self, canary_id=None):
        return self.current

    async def canary_arms(self, versions, since):
        return {v: self.arms.get(v, Arm(v)) for v in versions}


def a_canary(mode: str = "canary", status: str = "running") -> Canary:
    return Canary(canary_id="c1", version="cand", production_version="prod", share_pct=20.0, mode=mode,
                  status=status, min_samples=30, max_duration_s=3600, started_by="op",
                  started_at=utcnow() - timedelta(minutes=5))


async def test_a_verdict_goes_out_once_through_the_outbox(metrics):
    store = CanaryStore(a_canary(), {"cand": arm("cand", 40, 20), "prod": arm("prod", 40, 36)})
    judge_ = JudgeCanaries(store, metrics)
    sent = await judge_.judge_once()
    assert isinstance(sent, CanaryJudged) and sent.verdict == "rollback" and sent.canary_id == "c1"
    assert sent.report["candidate"]["valid_call_ratio"] == 0.5 and sent.report["tests"][1]["worse"]
    assert store.state.outbox == [sent] and store.published == [sent]
    assert await judge_.judge_once() is None  # a second round (or replica) sends nothing more
    assert store.published == [sent]
    assert metrics.canary_regressing._value.get() == 1
    assert metrics.canary_verdicts.labels(verdict="rollback")._value.get() == 1


async def test_ab_mode_reports_and_never_acts(metrics):
    store = CanaryStore(a_canary(mode="ab"), {"cand": arm("cand", 40, 20), "prod": arm("prod", 40, 36)})
    judge_ = JudgeCanaries(store, metrics)
    assert await judge_.judge_once() is None and store.published == []
    report = await judge_.report()
    assert report["report"]["decision"] == "rollback" and report["status"] == "running"


async def test_waiting_sends_nothing_and_no_canary_clears_the_gauges(metrics):
    store = CanaryStore(a_canary(), {"cand": arm("cand", 5, 5), "prod": arm("prod", 40, 36)})
    judge_ = JudgeCanaries(store, metrics)
    assert await judge_.judge_once() is None and store.published == []
    assert metrics.canary_runs.labels(arm="candidate")._value.get() == 5
    store.current = None
    await judge_.judge_once()
    assert metrics.canary_runs._metrics == {}
