"""The retrain policy: thresholds, cooldown, and the build it triggers."""

from __future__ import annotations

from datetime import timedelta

from contracts import utcnow
from log_miner.domain.policy import PolicyRules, PolicyStats, decide
from log_miner.service import RetrainPolicy
from tests.log_miner.runs import Trajectory

NOW = utcnow()


def stats(new=0, available=0, runs=0, failures=0, last=None) -> PolicyStats:
    return PolicyStats(new, available, runs, failures, last)


def test_enough_new_examples_trigger():
    rules = PolicyRules(min_new_examples=10)
    assert decide(stats(new=10, available=10), rules, NOW) == "new_examples"
    assert decide(stats(new=9, available=50), rules, NOW) is None


def test_a_high_failure_rate_triggers_only_with_enough_runs_and_examples():
    rules = PolicyRules(failure_rate=0.5, min_window_runs=20, min_examples=5)
    assert decide(stats(available=5, runs=20, failures=10), rules, NOW) == "failure_rate"
    assert decide(stats(available=5, runs=19, failures=19), rules, NOW) is None
    assert decide(stats(available=4, runs=20, failures=20), rules, NOW) is None
    assert decide(stats(available=5, runs=20, failures=9), rules, NOW) is None


def test_the_cooldown_and_the_switch_hold_triggers_back():
    rules = PolicyRules(min_new_examples=1, cooldown_s=600)
    assert decide(stats(new=5, last=NOW - timedelta(seconds=60)), rules, NOW) is None
    assert decide(stats(new=5, last=NOW - timedelta(seconds=601)), rules, NOW) == "new_examples"
    assert decide(stats(new=5), PolicyRules(enabled=False, min_new_examples=1), NOW) is None


async def test_the_policy_builds_a_dataset_and_asks_for_training(record, build, store, metrics):
    policy = RetrainPolicy(store, build, metrics, PolicyRules(min_new_examples=3, cooldown_s=3600), debounce_s=0)
    for i in range(3):
        await record.interaction(Trajectory(f"What is {i}+1?").call("calculator", {"expression": f"{i}+1"}, i + 1)
                                 .answer(str(i + 1)))
    result = await policy.evaluate()
    assert result is not None and result.built is not None
    assert result.training.requested_by == "policy"
    (row, _), = store.state.datasets.values()
    assert row.trigger == "policy:new_examples"
    assert metrics.policy_triggers.labels(reason="new_examples")._value.get() == 1
    # within the cooldown nothing more happens, however many runs arrive
    for i in range(5):
        await record.interaction(Trajectory(f"q{i}").answer(f"a{i}"))
    assert await policy.evaluate() is None


async def test_new_examples_are_counted_since_the_last_dataset(record, build, store, metrics):
    from tests.log_miner.runs import retrain

    for i in range(3):
        await record.interaction(Trajectory(f"q{i}").answer(f"a{i}"))
    await build.retrain(retrain())
    assert (await store.policy_stats(3600)).new_examples == 0
    await record.interaction(Trajectory("another").answer("one"))
    assert (await store.policy_stats(3600)).new_examples == 1


async def test_only_one_evaluation_runs_at_a_time(record, build, store, metrics):
    policy = RetrainPolicy(store, build, metrics, PolicyRules(min_new_examples=1), debounce_s=0)
    await record.interaction(Trajectory("q").answer("a"))
    async with store.exclusive("another replica"):
        assert await policy.evaluate() is None
    assert (await policy.evaluate()).built is not None
