"""When the miner asks for training on its own (an operator's RetrainRequested always does).

Evaluated after interactions and feedback arrive (debounced by the service). Triggers:

- `new_examples`: at least `min_new_examples` runs that teach something (success or
  corrected) were classified since the last dataset was built;
- `failure_rate`: over the runs received in the last `window_s` seconds (at least
  `min_window_runs` of them), the share whose primary label is a failure reaches
  `failure_rate`, and at least `min_examples` examples are available to train on.

Either is held back for `cooldown_s` after the last dataset the policy built, so a burst of
failures asks once, not once per run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class PolicyRules:
    enabled: bool = True
    min_new_examples: int = 200
    failure_rate: float = 0.5
    window_s: float = 3600.0
    min_window_runs: int = 20
    min_examples: int = 20
    cooldown_s: float = 3600.0


@dataclass(frozen=True)
class PolicyStats:
    new_examples: int  # example-yielding runs classified since the last dataset
    available_examples: int  # example-yielding runs in all
    window_runs: int
    window_failures: int
    last_policy_dataset_at: datetime | None

    @property
    def failure_rate(self) -> float:
        return self.window_failures / self.window_runs if self.window_runs else 0.0


def decide(stats: PolicyStats, rules: PolicyRules, now: datetime) -> str | None:
    """The trigger's name when a dataset should be built and trained on now, else None."""
    if not rules.enabled:
        return None
    last = stats.last_policy_dataset_at
    if last is not None and now - last < timedelta(seconds=rules.cooldown_s):
        return None
    if stats.new_examples >= rules.min_new_examples:
        return "new_examples"
    if (
        stats.window_runs >= rules.min_window_runs
        and stats.failure_rate >= rules.failure_rate
        and stats.available_examples >= rules.min_examples
    ):
        return "failure_rate"
    return None
