"""Use case: evaluate the retrain policy after interactions and feedback, debounced, and build
a dataset (and request training) when it says so. One replica evaluates at a time."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime

from contracts import DatasetOptions, LoraOptions, new_id, utcnow
from servicekit.logs import log_fields

from ..domain.policy import PolicyRules, decide
from ..metrics import MinerMetrics
from ..ports import MinerStore
from .build_dataset import BuildDataset, BuildRequest, BuildResult

logger = logging.getLogger("log_miner.policy")

LOCK_NAME = "log-miner:retrain-policy"


class RetrainPolicy:
    def __init__(self, store: MinerStore, build: BuildDataset, metrics: MinerMetrics, rules: PolicyRules, *,
                 debounce_s: float, base_model: str | None = None, clock: Callable[[], datetime] = utcnow,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.build = build
        self.metrics = metrics
        self.rules = rules
        self.debounce_s = debounce_s
        self.base_model = base_model
        self.clock = clock
        self.monotonic = monotonic
        self._wake = asyncio.Event()
        self._last_attempt: float | None = None

    def poke(self) -> None:
        """Something arrived: evaluate soon (many pokes within `debounce_s` make one evaluation)."""
        if self.rules.enabled:
            self._wake.set()

    async def run(self) -> None:
        """Background loop of the service."""
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.debounce_s)
            self._wake.clear()
            try:
                await self.evaluate()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive one failed evaluation; the next poke retries
                logger.warning("retrain policy evaluation failed", exc_info=True)

    async def evaluate(self) -> BuildResult | None:
        if not self.rules.enabled:
            return None
        # Also held back in memory after an attempt that built nothing (no dataset row to
        # start the cooldown from), so an unproductive trigger does not rebuild on every run.
        if self._last_attempt is not None and self.monotonic() - self._last_attempt < self.rules.cooldown_s:
            return None
        async with self.store.exclusive(LOCK_NAME) as mine:
            if not mine:
                return None
            stats = await self.store.policy_stats(self.rules.window_s)
            self.metrics.window_failure_ratio.set(stats.failure_rate)
            reason = decide(stats, self.rules, self.clock())
            if reason is None:
                return None
            self._last_attempt = self.monotonic()
            self.metrics.policy_triggers.labels(reason=reason).inc()
            dataset_id = new_id()
            detail = (f"{reason}: {stats.new_examples} new examples, failure rate {stats.failure_rate:.2f} "
                      f"over {stats.window_runs} runs")
            logger.info("retrain policy triggered (%s)", detail, extra=log_fields(dataset_id=dataset_id))
            return await self.build(BuildRequest(
                dataset_id=dataset_id, correlation_id=dataset_id, options=DatasetOptions(), training=LoraOptions(),
                trigger=f"policy:{reason}", requested_by="policy", base_model=self.base_model, reason=detail,
            ))
