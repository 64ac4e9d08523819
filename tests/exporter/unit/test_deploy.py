"""Alias-moving commands at the service layer, with fakes of our own ports: the event that
announces a move, refusals as PermanentError with nothing changed, the model server pushed before
the move (and a server failure leaving everything as it was)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from contracts import (
    EvaluationCompleted,
    ModelDeployed,
    ModelPromoted,
    ModelPromoteRequested,
    ModelRollbackRequested,
    SuiteScore,
)
from exporter.metrics import ExporterMetrics
from exporter.service import DeployModels
from modelregistry import BASE_VERSION, ModelVersion, NoPreviousVersionError, UnknownVersionError
from modelregistry.write import AliasMove
from servicekit.messaging import PermanentError
from tests.exporter.unit.fakes import FakeArtifacts, version


@dataclass
class FakeDeployments:
    """production/previous over a dict of versions; a move is kept only if `deployed` does not raise."""

    versions: dict[str, ModelVersion]
    aliases_: dict[str, str] = field(default_factory=lambda: {"production": BASE_VERSION})
    inbox: set[str] = field(default_factory=set)
    staged: list[ModelDeployed] = field(default_factory=list)
    published: list[ModelDeployed] = field(default_factory=list)  # after "commit"
    rejected: tuple[str, str, str] | None = None  # (version, evaluation id, reason) of the last rejection

    async def version(self, name: str) -> ModelVersion | None:
        return self.versions.get(name)

    async def aliases(self) -> dict[str, str]:
        return dict(self.aliases_)

    async def _apply(self, message_id: str, target: str, new: dict[str, str], deployed) -> AliasMove | None:  # noqa: ANN001
        if message_id in self.inbox:
            return None
        v = self.versions.get(target)
        if v is None:
            raise UnknownVersionError(target)
        move = AliasMove(v, self.aliases_.get("production"), v.gguf(), changed=target != self.aliases_["production"])
        event = deployed(move)  # raises → nothing below happens (the transaction rolls back)
        self.inbox.add(message_id)
        if event is not None:
            self.staged.append(event)
            self.published.append(event)
        self.aliases_ = new
        return move

    async def promote(self, message_id, message_type, version, *, cause, actor, quantization, evaluation_id,  # noqa: ANN001
                      reason, deployed) -> AliasMove | None:
        return await self._apply(message_id, version, {"production": version,
                                                       "previous": self.aliases_["production"]}, deployed)

    async def rollback(self, message_id, message_type, *, actor, reason, deployed) -> AliasMove | None:  # noqa: ANN001
        previous = self.aliases_.get("previous")
        if previous is None:
            raise NoPreviousVersionError()
        return await self._apply(message_id, previous, {"production": previous,
                                                        "previous": self.aliases_["production"]}, deployed)


    async def record_evaluation(self, message_id, message_type, version, evaluation,  # noqa: ANN001, ANN201
                                *, reject_reason):  # noqa: ANN001
        if message_id in self.inbox:
            return None
        v = self.versions.get(version)
        if v is None:
            raise UnknownVersionError(version)
        self.inbox.add(message_id)
        if reject_reason is not None:
            self.rejected = (version, evaluation.evaluation_id, reject_reason)
            v = replace(v, status="rejected")
        v = replace(v, metrics=v.metrics | evaluation.to_doc())
        self.versions[version] = v
        return v


class FakeServer:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.pushed: list[tuple[str, str | None]] = []

    async def publish(self, version: ModelVersion, gguf: Path, modelfile: str | None,
                      previous_version: str | None) -> str:
        if self.fail:
            raise ConnectionError("ollama is down")
        self.pushed.append((version.version, previous_version))
        return f"agentloop:{version.version}"


class LocalFiles(FakeArtifacts):
    async def local_model_file(self, file):  # noqa: ANN001
        return Path("/tmp/model.gguf")


def _setup(server: FakeServer | None = None):  # noqa: ANN202
    deployments = FakeDeployments({"v1": version("v1"), BASE_VERSION: version(BASE_VERSION, status="production")})
    registry = CollectorRegistry()
    use_case = DeployModels(deployments, LocalFiles(), ExporterMetrics(registry), server=server)
    return use_case, deployments, deployments, registry


def _promoted(**kw) -> ModelPromoted:  # noqa: ANN003
    fields = {"model_version": "v1", "job_id": "j", "evaluation_id": "e1", "adapter_uri": "s3://b/a/",
              "base_model": "bundled", "quantization": "Q4_K_M", "sha256": "a" * 64} | kw
    return ModelPromoted.create(correlation_id="corr", **fields)


async def test_a_passed_gate_announces_the_new_production_after_the_move() -> None:
    use_case, deployments, store, registry = _setup()
    msg = _promoted()
    event = await use_case.promoted(msg)
    assert deployments.aliases_ == {"production": "v1", "previous": BASE_VERSION}
    assert store.published == deployments.staged == [event]
    assert event.model_version == "v1" and event.sha256 == "a" * 64 and event.cause == "promoted"
    assert event.previous_version == BASE_VERSION and event.ollama_model is None
    assert event.envelope.causation_id == msg.envelope.message_id
    assert registry.get_sample_value("exporter_production_model_info", {"version": "v1"}) == 1
    assert registry.get_sample_value("exporter_deployments_total", {"cause": "promoted", "outcome": "deployed"}) == 1
    assert await use_case.promoted(msg) is None  # a redelivery changes nothing
    assert len(store.published) == 1


async def test_a_digest_that_is_not_the_registered_one_is_refused_and_nothing_moves() -> None:
    use_case, deployments, store, _ = _setup()
    with pytest.raises(PermanentError, match="the gate evaluated sha256"):
        await use_case.promoted(_promoted(sha256="b" * 64))
    assert deployments.aliases_ == {"production": BASE_VERSION} and store.published == []


async def test_registry_refusals_become_permanent_errors() -> None:
    use_case, deployments, store, registry = _setup()
    with pytest.raises(PermanentError, match="not registered"):
        await use_case.promote_requested(ModelPromoteRequested.create(
            correlation_id="c", request_id="r", model_version="ghost", requested_by="alice"))
    with pytest.raises(PermanentError, match="nothing to roll back to"):
        await use_case.rollback_requested(ModelRollbackRequested.create(correlation_id="c", request_id="r2",
                                                                        requested_by="alice"))
    assert deployments.aliases_ == {"production": BASE_VERSION} and store.published == []
    assert registry.get_sample_value("exporter_deployments_total", {"cause": "rollback", "outcome": "refused"}) == 1


async def test_operator_promotion_and_rollback_carry_cause_and_previous() -> None:
    use_case, deployments, store, _ = _setup()
    await use_case.promote_requested(ModelPromoteRequested.create(
        correlation_id="c", request_id="r", model_version="v1", requested_by="alice"))
    back = await use_case.rollback_requested(ModelRollbackRequested.create(correlation_id="c", request_id="r2",
                                                                           requested_by="bob"))
    assert [e.cause for e in store.published] == ["operator", "rollback"]
    assert back.model_version == BASE_VERSION and back.previous_version == "v1"
    assert deployments.aliases_ == {"production": BASE_VERSION, "previous": "v1"}


async def test_with_a_model_server_the_version_is_pushed_before_the_move() -> None:
    server = FakeServer()
    use_case, deployments, store, registry = _setup(server)
    event = await use_case.promoted(_promoted())
    assert server.pushed == [("v1", BASE_VERSION)]
    assert event.ollama_model == "agentloop:v1"
    assert registry.get_sample_value("exporter_model_server_pushes_total", {"outcome": "pushed"}) == 1


async def test_a_model_server_failure_moves_nothing_and_is_retried() -> None:
    use_case, deployments, store, registry = _setup(FakeServer(fail=True))
    with pytest.raises(ConnectionError):  # not permanent: the broker redelivers within the delivery limit
        await use_case.promoted(_promoted())
    assert deployments.aliases_ == {"production": BASE_VERSION} and deployments.inbox == set()
    assert store.published == []
    assert registry.get_sample_value("exporter_model_server_pushes_total", {"outcome": "failed"}) == 1


async def test_a_failed_gate_rejects_the_candidate_and_records_its_scores() -> None:
    use_case, deployments, store, _ = _setup()
    failed = EvaluationCompleted.create(
        correlation_id="c", evaluation_id="e1", job_id="j", candidate="v1", baseline=BASE_VERSION, passed=False,
        reasons=["Q4_K_M: FAIL bfcl 0.41 < 0.6"], primary_suite="bfcl",
        candidate_scores=[SuiteScore(suite="json", score=1.0), SuiteScore(suite="bfcl", score=0.41)],
    )
    recorded = await use_case.evaluated(failed)
    assert recorded is not None and recorded.status == "rejected"
    assert deployments.rejected == ("v1", "e1", "Q4_K_M: FAIL bfcl 0.41 < 0.6")
    assert recorded.metrics == {"evaluation_id": "e1", "passed": False, "quantization": None, "primary_suite": "bfcl",
                                "primary_score": 0.41, "scores": {"json": 1.0, "bfcl": 0.41}}
    assert await use_case.evaluated(failed) is None  # redelivered: nothing changes
    with pytest.raises(PermanentError, match="not registered"):
        await use_case.evaluated(EvaluationCompleted.create(correlation_id="c", evaluation_id="e2", job_id="j",
                                                            candidate="ghost", passed=False))
    assert store.published == []


async def test_a_passed_gate_records_the_primary_score_and_leaves_the_move_to_its_promotion() -> None:
    use_case, deployments, store, registry = _setup()
    passed = EvaluationCompleted.create(
        correlation_id="c", evaluation_id="e1", job_id="j", candidate="v1", passed=True, quantization="Q4_K_M",
        primary_suite="bfcl", candidate_scores=[SuiteScore(suite="bfcl", score=0.83)],
    )
    recorded = await use_case.evaluated(passed)
    assert recorded is not None and recorded.status == "candidate" and deployments.rejected is None
    assert (recorded.metrics["passed"], recorded.metrics["quantization"], recorded.metrics["primary_score"]) == (
        True, "Q4_K_M", 0.83)
    assert deployments.aliases_ == {"production": BASE_VERSION} and store.published == []
    assert registry.get_sample_value("exporter_messages_received_total",
                                     {"type": passed.envelope.message_type}) == 1
