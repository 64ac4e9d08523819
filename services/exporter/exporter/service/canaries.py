"""Canary rollouts in the registry (decision 0020): an operator's `canary.start.requested` and
`canary.stop.requested`, the judge's `canary.judged`.

The exporter records what the others decided, as the registry's one writer: a start records the
canary (runners read it from the registry, so a restarted runner routes the same share); the
judge's `promote` ends the canary and makes its version production in one transaction, with
`model.deployed` (cause `canary`) and `canary.ended` staged in the outbox; `rollback` and an
operator's stop end it with production untouched. A command that can never succeed (an unknown
version, a second canary, one that had ended) is dead-lettered with the cause logged.
"""

from __future__ import annotations

import logging

from contracts import CanaryEnded, CanaryJudged, CanaryStartRequested, CanaryStopRequested, Contract, deterministic_id
from modelregistry import Canary
from servicekit.logs import log_fields
from servicekit.messaging import PermanentError

from ..metrics import ExporterMetrics
from ..ports import CanaryRegistry
from .deploy import DeployModels, registry_refusal

logger = logging.getLogger("exporter.canaries")


class RunCanaries:
    def __init__(self, registry: CanaryRegistry, deploy: DeployModels, metrics: ExporterMetrics) -> None:
        self.registry = registry
        self.deploy = deploy
        self.metrics = metrics

    async def start_requested(self, msg: CanaryStartRequested) -> Canary | None:
        env = msg.envelope
        fields = log_fields(message_id=env.message_id, canary_id=msg.request_id, model_version=msg.model_version)
        with registry_refusal(env.message_type, self.metrics.canaries.labels(event="refused").inc):
            canary = await self.registry.start_canary(
                env.message_id, env.message_type, canary_id=msg.request_id, version=msg.model_version,
                share_pct=msg.share_pct, mode=msg.mode, min_samples=msg.min_samples,
                max_duration_s=msg.max_duration_s, actor=msg.requested_by, reason=msg.reason,
            )
        if canary is None:
            logger.info("duplicate delivery ignored", extra=fields)
            return None
        self.metrics.canaries.labels(event="started").inc()
        logger.info("canary %s: %s%% of live runs on %s beside production %s (%s mode, by %s)", canary.canary_id,
                    f"{canary.share_pct:g}", canary.version, canary.production_version, canary.mode,
                    canary.started_by, extra=fields)
        return canary

    async def stop_requested(self, msg: CanaryStopRequested) -> Canary | None:
        return await self._end(msg, msg.canary_id, "stopped", msg.requested_by, msg.reason or "stopped by an operator",
                               None, promote=False)

    async def judged(self, msg: CanaryJudged) -> Canary | None:
        if msg.verdict == "rollback":
            return await self._end(msg, msg.canary_id, "rolled_back", "canary-judge", msg.reason, msg.report,
                                   promote=False)
        try:
            return await self._end(msg, msg.canary_id, "promoted", "canary-judge", msg.reason, msg.report,
                                   promote=True)
        except PermanentError as exc:
            # The judge sends one verdict per canary: a promotion the registry refuses (the version
            # was rejected or retired meanwhile) must still end the canary, or it would run for ever.
            logger.warning("canary %s: the judge's promotion was refused (%s); ending it rolled back", msg.canary_id,
                           exc, extra=log_fields(message_id=msg.envelope.message_id, canary_id=msg.canary_id))
            return await self._end(msg, msg.canary_id, "rolled_back", "canary-judge",
                                   f"the judge's promotion was refused: {exc}", msg.report, promote=False)

    async def _end(self, msg: Contract, canary_id: str, status: str, actor: str, reason: str,
                   report: dict | None, *, promote: bool) -> Canary | None:
        env = msg.envelope
        fields = log_fields(message_id=env.message_id, canary_id=canary_id)

        def ended(canary: Canary) -> CanaryEnded:
            return CanaryEnded.create(
                correlation_id=canary.canary_id, causation=msg,
                message_id=deterministic_id("canary-ended", canary.canary_id),
                canary_id=canary.canary_id, model_version=canary.version, status=status, ended_by=actor,
                reason=reason,
            )

        deployed = None
        if promote:
            found = await self.registry.canary(canary_id)
            ollama = await self.deploy.push(msg, "canary", actor, found.version) if found and found.running else None
            deployed = self.deploy.deployed_factory(msg, "canary", [], ollama=ollama)
        with registry_refusal(env.message_type, self.metrics.canaries.labels(event="refused").inc):
            result = await self.registry.end_canary(env.message_id, env.message_type, canary_id, status=status,
                                                    actor=actor, reason=reason, report=report, ended=ended,
                                                    deployed=deployed)
        if result is None:
            logger.info("duplicate delivery ignored", extra=fields)
            return None
        canary, move = result
        if canary is None:
            logger.info("canary %s had ended already: nothing changed", canary_id, extra=fields)
            return None
        self.metrics.canaries.labels(event=status).inc()
        if move is not None and move.changed:
            self.metrics.deployments.labels(cause="canary", outcome="deployed").inc()
            self.metrics.production_changed(move.version.version, move.previous_version)
        logger.info("canary %s of %s %s by %s: %s", canary.canary_id, canary.version, status.replace("_", " "),
                    actor, reason, extra=fields)
        return canary
