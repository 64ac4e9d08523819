"""Use case: judge the running canary on live outcomes (decision 0020, `domain.canary`).

Every `interval_s` the judge reads the registry's running canary, tallies both arms from what
this service recorded since the canary started, and publishes the gauges. In `canary` mode a
verdict (`promote` / `rollback`) goes out once as `canary.judged` through the outbox (the inbox
claim on a message id made from the canary's id keeps it to one, across replicas and restarts);
the exporter acts on it. In `ab` mode the report is all there is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from contracts import CanaryJudged, deterministic_id, utcnow
from modelregistry import Canary
from servicekit.logs import log_fields

from ..domain.canary import JudgeRules, Verdict, judge
from ..metrics import MinerMetrics
from ..ports import MinerStore

logger = logging.getLogger("log_miner.canary")


class JudgeCanaries:
    def __init__(self, store: MinerStore, metrics: MinerMetrics, rules: JudgeRules = JudgeRules(), *,
                 interval_s: float = 15.0, clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.metrics = metrics
        self.rules = rules
        self.interval_s = interval_s
        self._clock = clock

    async def run(self) -> None:
        """Background loop of the service."""
        while True:
            try:
                await self.judge_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive one failed round; the next one retries
                logger.warning("canary judgement failed", exc_info=True)
            await asyncio.sleep(self.interval_s)

    async def report(self, canary_id: str | None = None) -> dict[str, Any] | None:
        """The canary (by id; default the running one, else the last) with its report now; None
        when there is none. An ended canary answers the report it ended with."""
        canary = await self.store.canary(canary_id)
        if canary is None:
            return None
        if canary.running:
            verdict, elapsed = await self._verdict(canary)
            report = verdict.report(elapsed)
        else:
            report = canary.report
        return {"canary_id": canary.canary_id, "status": canary.status, "report": report}

    async def judge_once(self) -> CanaryJudged | None:
        canary = await self.store.running_canary()
        if canary is None:
            self.metrics.canary_cleared()
            return None
        verdict, elapsed = await self._verdict(canary)
        self.metrics.canary_tallied(verdict)
        if canary.mode != "canary" or verdict.decision == "wait":
            return None
        return await self._decide(canary, verdict, elapsed)

    async def _verdict(self, canary: Canary) -> tuple[Verdict, float]:
        arms = await self.store.canary_arms([canary.version, canary.production_version], canary.started_at)
        elapsed = (self._clock() - canary.started_at).total_seconds()
        verdict = judge(arms[canary.version], arms[canary.production_version], min_samples=canary.min_samples,
                        elapsed_s=elapsed, max_duration_s=canary.max_duration_s, rules=self.rules)
        return verdict, elapsed

    async def _decide(self, canary: Canary, verdict: Verdict, elapsed: float) -> CanaryJudged | None:
        assert verdict.decision != "wait"
        event = CanaryJudged.create(
            correlation_id=canary.canary_id, message_id=deterministic_id("canary-judged", canary.canary_id),
            canary_id=canary.canary_id, model_version=canary.version, production_version=canary.production_version,
            verdict=verdict.decision, reason=verdict.reason, report=verdict.report(elapsed),
        )
        async with self.store.transaction() as tx:
            if not await tx.claim(event.envelope.message_id, "CanaryJudged"):
                return None  # decided before (another replica, or before a restart)
            await tx.stage(event)
        await self.store.publish(event)
        self.metrics.canary_verdicts.labels(verdict=verdict.decision).inc()
        logger.info("canary %s of %s: %s (%s)", canary.canary_id, canary.version, verdict.decision, verdict.reason,
                    extra=log_fields(canary_id=canary.canary_id, model_version=canary.version))
        return event
