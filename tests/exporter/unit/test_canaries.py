"""The exporter's canary commands with a fake of its own registry port: the judge's verdicts end
the canary once, and a promotion the registry refuses still ends it (rolled back)."""

from __future__ import annotations

from dataclasses import replace

from prometheus_client import CollectorRegistry

from contracts import CanaryEnded, CanaryJudged, utcnow
from exporter.metrics import ExporterMetrics
from exporter.service import DeployModels, RunCanaries
from modelregistry import Canary, NotPromotableError
from modelregistry.write import AliasMove
from tests.exporter.unit.fakes import FakeArtifacts, version


class FakeCanaryRegistry:
    def __init__(self, refuse_promotion: str | None = None) -> None:
        self.canary_row = Canary(canary_id="c1", version="v2", production_version="v1", share_pct=10.0,
                                 mode="canary", status="running", min_samples=30, max_duration_s=3600,
                                 started_by="op", started_at=utcnow())
        self.refuse_promotion = refuse_promotion
        self.inbox: set[str] = set()
        self.staged: list = []

    async def canary(self, canary_id: str) -> Canary | None:
        return self.canary_row

    async def aliases(self) -> dict[str, str]:
        return {"production": "v1"}

    async def end_canary(self, message_id, message_type, canary_id, *, status, actor, reason, report, ended,
                         deployed):  # noqa: ANN001
        if message_id in self.inbox:
            return None
        if deployed is not None and self.refuse_promotion:
            raise NotPromotableError(self.refuse_promotion)  # the transaction rolls back: nothing claimed
        self.inbox.add(message_id)
        if not self.canary_row.running:
            return None, None
        self.canary_row = replace(self.canary_row, status=status, reason=reason, report=report)
        move = None
        if deployed is not None:
            v2 = version("v2", status="production")
            move = AliasMove(v2, "v1", v2.gguf())
            if (event := deployed(move)) is not None:
                self.staged.append(event)
        self.staged.append(ended(self.canary_row))
        return self.canary_row, move


def verdict(decision: str) -> CanaryJudged:
    return CanaryJudged.create(correlation_id="c1", canary_id="c1", model_version="v2", production_version="v1",
                               verdict=decision, reason="the tests", report={"decision": decision})


def use_case(registry: FakeCanaryRegistry) -> RunCanaries:
    metrics = ExporterMetrics(CollectorRegistry())
    return RunCanaries(registry, DeployModels(registry, FakeArtifacts(), metrics), metrics)


async def test_a_promote_verdict_ends_the_canary_and_deploys_its_version():
    registry = FakeCanaryRegistry()
    ended = await use_case(registry).judged(verdict("promote"))
    assert ended.status == "promoted"
    deployed, notice = registry.staged
    assert (deployed.model_version, deployed.cause) == ("v2", "canary")
    assert isinstance(notice, CanaryEnded) and notice.status == "promoted" and notice.ended_by == "canary-judge"
    assert await use_case(registry).judged(verdict("promote")) is None  # a redelivery changes nothing


async def test_a_promotion_the_registry_refuses_still_ends_the_canary_rolled_back():
    registry = FakeCanaryRegistry(refuse_promotion="v2 was rejected by the gate and cannot be promoted")
    ended = await use_case(registry).judged(verdict("promote"))
    assert ended.status == "rolled_back" and "promotion was refused" in ended.reason
    assert "rejected by the gate" in ended.reason
    (notice,) = registry.staged
    assert notice.status == "rolled_back"
