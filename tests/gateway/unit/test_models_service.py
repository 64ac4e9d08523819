"""Model operator use cases (promote, rollback, wait) with fakes of the gateway's own ports."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from contracts import Contract, ModelPromoteRequested, ModelRollbackRequested, deterministic_id
from gateway.domain import (
    AuditEntry,
    Identity,
    ModelCommandConflictError,
    ModelNotFoundError,
    PromoteSubmission,
    Role,
    RollbackSubmission,
    primary_score,
)
from gateway.service.models import ModelService
from modelregistry import BASE_VERSION, ModelFile, ModelVersion

from .fakes import FakeAuditLog, FakePublisher

OPERATOR = Identity(subject="ops-1", role=Role.OPERATOR)


def version(name: str, *, status: str = "candidate", evaluation_id: str | None = "eval-1",
            quants: tuple[str, ...] = ("Q4_K_M", "Q8_0"), quantization: str | None = "Q4_K_M",
            metrics: dict | None = None) -> ModelVersion:
    files = [ModelFile(q, f"s3://models/{name}/{q}.gguf", "ab" * 32, 100, "gguf") for q in quants]
    return ModelVersion(version=name, base_model=BASE_VERSION, status=status, quantization=quantization, files=files,
                        lineage={}, metrics=metrics or {}, job_id="job-1", dataset_id="ds-1", adapter_uri=None,
                        evaluation_id=evaluation_id, created_at=datetime.now(UTC))


class FakeRegistry:
    def __init__(self, *versions: ModelVersion, aliases: dict[str, str] | None = None) -> None:
        self.by_name = {v.version: v for v in versions}
        self.alias_map = dict(aliases or {})
        self.reads = 0

    async def versions(self) -> list[ModelVersion]:
        return list(self.by_name.values())

    async def version(self, name: str) -> ModelVersion | None:
        return self.by_name.get(name)

    async def aliases(self) -> dict[str, str]:
        self.reads += 1
        return dict(self.alias_map)


class FakeOpsStore:
    def __init__(self) -> None:
        self.requests: list[tuple[AuditEntry, Contract]] = []

    async def request(self, entry: AuditEntry, message: Contract) -> None:
        self.requests.append((entry, message))


def service(registry: FakeRegistry) -> tuple[ModelService, FakeOpsStore, FakeAuditLog, FakePublisher]:
    store, audit, publisher = FakeOpsStore(), FakeAuditLog(), FakePublisher()
    return ModelService(registry, store, audit, publisher, poll_interval_s=0.01), store, audit, publisher


async def test_a_promotion_is_audited_and_published_as_a_command():
    registry = FakeRegistry(version(BASE_VERSION, status="production"), version("v2"),
                            aliases={"production": BASE_VERSION, "candidate": "v2"})
    models, store, audit, publisher = service(registry)
    command = await models.promote(OPERATOR, "v2", PromoteSubmission(reason="better", quantization="q8_0"), "10.0.0.1")

    [(entry, staged)] = store.requests
    assert publisher.published == [staged]
    assert isinstance(staged, ModelPromoteRequested)
    assert (staged.model_version, staged.requested_by, staged.quantization, staged.reason) == (
        "v2", "ops-1", "q8_0", "better")
    assert staged.request_id == command.request_id
    assert staged.envelope.message_id == deterministic_id("model-promote-requested", command.request_id)
    assert (entry.action, entry.outcome, entry.target, entry.client_ip) == ("models.promote", "ok", "v2", "10.0.0.1")
    assert entry.details == {"reason": "better", "quantization": "q8_0", "request_id": command.request_id,
                             "production": BASE_VERSION}
    assert (command.expected, command.production) == ("v2", BASE_VERSION)
    assert audit.entries == []  # the accepted command's audit row is written with its outbox row


@pytest.mark.parametrize(("target", "quant", "why"), [
    (version("v3", status="rejected"), None, "rejected by the gate"),
    (version("v3", evaluation_id=None), None, "never evaluated"),
    (version("v3"), "Q5_K_M", "no exported GGUF for quantization 'Q5_K_M' (has: Q4_K_M, Q8_0)"),
    (version("v3", quantization=None), None, "no exported GGUF"),  # two quants, none chosen
])
async def test_a_version_the_registry_would_refuse_is_a_conflict_and_nothing_is_sent(target, quant, why):
    models, store, audit, publisher = service(FakeRegistry(target, aliases={"production": "x"}))
    with pytest.raises(ModelCommandConflictError, match=why.replace("(", r"\(").replace(")", r"\)")):
        await models.promote(OPERATOR, "v3", PromoteSubmission(quantization=quant), None)
    assert store.requests == [] and publisher.published == []
    [entry] = audit.entries
    assert (entry.action, entry.outcome, entry.target) == ("models.promote", "error", "v3")
    assert why.split(" (")[0] in entry.details["refused"]


async def test_a_version_that_served_before_may_be_promoted_without_an_evaluation_id():
    models, store, _, _ = service(FakeRegistry(version("old", status="retired", evaluation_id=None)))
    await models.promote(OPERATOR, "old", PromoteSubmission(), None)
    assert len(store.requests) == 1


async def test_promoting_an_unknown_version_is_not_found_and_audited():
    models, store, audit, _ = service(FakeRegistry())
    with pytest.raises(ModelNotFoundError):
        await models.promote(OPERATOR, "nope", PromoteSubmission(), None)
    assert store.requests == [] and audit.entries[0].details["refused"] == "nope is not registered"


async def test_a_rollback_names_the_previous_version_as_the_expected_production():
    registry = FakeRegistry(aliases={"production": "v2", "previous": "v1"})
    models, store, _, publisher = service(registry)
    command = await models.rollback(OPERATOR, RollbackSubmission(reason="v2 answers badly"), "127.0.0.1")
    [(entry, staged)] = store.requests
    assert isinstance(staged, ModelRollbackRequested) and publisher.published == [staged]
    assert (staged.requested_by, staged.reason, staged.request_id) == ("ops-1", "v2 answers badly", command.request_id)
    assert (entry.action, entry.target, entry.details["production"]) == ("models.rollback", "v1", "v2")
    assert (command.expected, command.production) == ("v1", "v2")


@pytest.mark.parametrize("aliases", [{"production": "v1"}, {"production": "v1", "previous": "v1"}])
async def test_a_rollback_without_a_previous_version_is_a_conflict(aliases):
    models, store, audit, publisher = service(FakeRegistry(aliases=aliases))
    with pytest.raises(ModelCommandConflictError, match="nothing to roll back to"):
        await models.rollback(OPERATOR, RollbackSubmission(), None)
    assert store.requests == [] and publisher.published == []
    assert audit.entries[0].action == "models.rollback" and audit.entries[0].outcome == "error"


async def test_waiting_returns_the_aliases_once_production_moved():
    registry = FakeRegistry(aliases={"production": "v1"})
    models, *_ = service(registry)

    async def exporter_moves_it() -> None:
        while registry.reads < 3:
            await asyncio.sleep(0.005)
        registry.alias_map = {"production": "v2", "previous": "v1"}

    mover = asyncio.create_task(exporter_moves_it())
    assert await models.wait_for_production("v2", timeout_s=5) == {"production": "v2", "previous": "v1"}
    await mover


async def test_waiting_gives_up_after_its_timeout():
    models, *_ = service(FakeRegistry(aliases={"production": "v1"}))
    assert await models.wait_for_production("v2", timeout_s=0.05) is None


async def test_the_alias_filter_lists_only_the_version_it_names():
    registry = FakeRegistry(version("v1"), version("v2"), aliases={"production": "v2"})
    models, *_ = service(registry)
    _, versions = await models.versions("production")
    assert [v.version for v in versions] == ["v2"]
    _, versions = await models.versions("previous")
    assert versions == []


@pytest.mark.parametrize(("metrics", "score"), [
    ({"primary_score": 0.9, "accuracy": 0.1}, 0.9),
    ({"accuracy": 0.75}, 0.75),
    ({"scores": {"bfcl": {"score": 0.5}}}, 0.5),
    ({"scores": {"bfcl": 0.25}}, 0.25),
    ({"loss": 1.2}, None),
    ({"accuracy": True}, None),
])
def test_the_primary_score_comes_from_the_recorded_metrics(metrics, score):
    assert primary_score(metrics) == score
