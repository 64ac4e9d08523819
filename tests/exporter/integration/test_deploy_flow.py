"""The exporter service moving aliases on real RabbitMQ and Postgres: the gate's model.promoted,
an operator's rollback, the gate's verdicts recorded on the version (a failed one rejected), and
commands that can never succeed (dead-lettered, nothing changed)."""

from __future__ import annotations

import asyncpg

import modelregistry as reg
from contracts import (
    EvaluationCompleted,
    ModelPromoted,
    ModelPromoteRequested,
    ModelRollbackRequested,
    SuiteScore,
    new_id,
)
from modelregistry import write
from tests.exporter.integration.conftest import Bus, eventually
from tests.harness import ServiceProcess
from tests.registry.state import gguf_files, insert_version, reset_registry


async def _promote_v(bus: Bus, conn: asyncpg.Connection, name: str) -> dict:
    await insert_version(conn, name, job_id=f"job-{name}")
    gguf = gguf_files(name)[0]
    msg = ModelPromoted.create(correlation_id=new_id(), model_version=name, job_id=f"job-{name}",
                               evaluation_id=f"eval-{name}", adapter_uri="s3://b/a/", base_model="bundled",
                               quantization="Q4_K_M", gguf_uri=gguf["uri"], sha256=gguf["sha256"])
    await bus.publish(msg)
    (deployed,) = await eventually(lambda: bus.of("model.deployed.v1", model_version=name), 30,
                                   f"model.deployed for {name}")
    return deployed


async def test_a_passed_gate_moves_production_and_announces_it(bus: Bus, registry_conn: asyncpg.Connection) -> None:
    await reset_registry(registry_conn)
    name = f"gemma3-270m-{new_id()[:8]}"
    deployed = await _promote_v(bus, registry_conn, name)
    gguf = gguf_files(name)[0]
    assert deployed["cause"] == "promoted" and deployed["alias"] == "production"
    assert deployed["gguf_uri"] == gguf["uri"] and deployed["sha256"] == gguf["sha256"]
    assert deployed["previous_version"] == reg.BASE_VERSION and deployed["ollama_model"] is None
    assert await reg.get_aliases(registry_conn) == {"production": name, "previous": reg.BASE_VERSION}
    promoted = await reg.get_version(registry_conn, name)
    assert promoted.status == "production" and promoted.evaluation_id == f"eval-{name}"
    latest = (await write.alias_history(registry_conn, "production", limit=1))[0]
    assert (latest["to_version"], latest["cause"], latest["actor"]) == (name, "promoted", "evaluator")


async def test_rollback_restores_the_previous_version(bus: Bus, registry_conn: asyncpg.Connection) -> None:
    await reset_registry(registry_conn)
    name = f"gemma3-270m-{new_id()[:8]}"
    await _promote_v(bus, registry_conn, name)
    cmd = ModelRollbackRequested.create(correlation_id=new_id(), request_id=new_id(), requested_by="op-alice",
                                        reason="worse answers")
    await bus.publish(cmd)
    (deployed,) = await eventually(lambda: bus.of("model.deployed.v1", cause="rollback", previous_version=name), 30,
                                   "model.deployed after the rollback")
    assert deployed["model_version"] == reg.BASE_VERSION and deployed["gguf_uri"] == reg.BUNDLED_URI
    assert await reg.get_aliases(registry_conn) == {"production": reg.BASE_VERSION, "previous": name}
    latest = (await write.alias_history(registry_conn, "production", limit=1))[0]
    assert (latest["cause"], latest["actor"], latest["reason"]) == ("rollback", "op-alice", "worse answers")


async def test_a_rollback_with_nothing_to_roll_back_to_is_dead_lettered_with_its_cause(
    bus: Bus, exporter: ServiceProcess, registry_conn: asyncpg.Connection
) -> None:
    await reset_registry(registry_conn)
    before = await write.alias_history(registry_conn, limit=1)
    cmd = ModelRollbackRequested.create(correlation_id=new_id(), request_id=new_id(), requested_by="op-bob")
    await bus.publish(cmd)
    queue = "exporter.model.rollback.requested.v1"
    dead = await eventually(lambda: bus.dead_letters(queue), 30, "the rollback in the DLQ")
    assert [d["request_id"] for d in dead] == [cmd.request_id]
    await eventually(lambda: cmd.envelope.message_id in exporter.log_text(), 10, "the dead-letter log line")
    line = next(x for x in exporter.log_text().splitlines() if cmd.envelope.message_id in x and "dead-letter" in x)
    assert "nothing to roll back to" in line
    assert await reg.get_aliases(registry_conn) == {"production": reg.BASE_VERSION}
    assert await write.alias_history(registry_conn, limit=1) == before
    assert not bus.of("model.deployed.v1", cause="rollback", previous_version=None)


async def test_promoting_an_unknown_version_is_dead_lettered_and_changes_nothing(
    bus: Bus, exporter: ServiceProcess, registry_conn: asyncpg.Connection
) -> None:
    await reset_registry(registry_conn)
    cmd = ModelPromoteRequested.create(correlation_id=new_id(), request_id=new_id(), model_version="no-such-version",
                                       requested_by="op-carol")
    await bus.publish(cmd)
    dead = await eventually(lambda: bus.dead_letters("exporter.model.promote.requested.v1"), 30,
                            "the promotion in the DLQ")
    assert [d["model_version"] for d in dead] == ["no-such-version"]
    await eventually(lambda: cmd.envelope.message_id in exporter.log_text(), 10, "the dead-letter log line")
    line = next(x for x in exporter.log_text().splitlines() if cmd.envelope.message_id in x and "dead-letter" in x)
    assert "not registered" in line
    assert await reg.get_aliases(registry_conn) == {"production": reg.BASE_VERSION}
    assert not bus.of("model.deployed.v1", model_version="no-such-version")


async def test_an_operator_cannot_promote_a_candidate_the_gate_never_evaluated(
    bus: Bus, registry_conn: asyncpg.Connection
) -> None:
    await reset_registry(registry_conn)
    name = f"gemma3-270m-{new_id()[:8]}"
    await insert_version(registry_conn, name)
    cmd = ModelPromoteRequested.create(correlation_id=new_id(), request_id=new_id(), model_version=name,
                                       requested_by="op-dave")
    await bus.publish(cmd)
    dead = await eventually(lambda: bus.dead_letters("exporter.model.promote.requested.v1"), 30,
                            "the promotion in the DLQ")
    assert [d["model_version"] for d in dead] == [name]
    assert await reg.get_aliases(registry_conn) == {"production": reg.BASE_VERSION}


async def test_a_candidate_that_failed_the_gate_is_rejected_with_its_scores_recorded(
        bus: Bus, registry_conn: asyncpg.Connection) -> None:
    await reset_registry(registry_conn)
    name = f"gemma3-270m-{new_id()[:8]}"
    await insert_version(registry_conn, name)
    await bus.publish(EvaluationCompleted.create(
        correlation_id=new_id(), evaluation_id="eval-x", job_id="j", candidate=name, passed=False,
        reasons=["regressed on bfcl"], primary_suite="bfcl",
        candidate_scores=[SuiteScore(suite="bfcl", score=0.25), SuiteScore(suite="json", score=0.9)]))

    async def rejected() -> bool:
        v = await reg.get_version(registry_conn, name)
        return v is not None and v.status == "rejected"

    await eventually(rejected, 30, "the candidate to be rejected")
    v = await reg.get_version(registry_conn, name)
    assert v.evaluation_id == "eval-x"
    assert v.metrics == {"evaluation_id": "eval-x", "passed": False, "quantization": None, "primary_suite": "bfcl",
                         "primary_score": 0.25, "scores": {"bfcl": 0.25, "json": 0.9}}


async def test_a_passed_verdict_records_the_primary_score_once_and_moves_nothing(
        bus: Bus, registry_conn: asyncpg.Connection, exporter: ServiceProcess) -> None:
    await reset_registry(registry_conn)
    name = f"gemma3-270m-{new_id()[:8]}"
    await insert_version(registry_conn, name)
    verdict = EvaluationCompleted.create(
        correlation_id=new_id(), evaluation_id=f"eval-{name}", job_id="j", candidate=name, passed=True,
        quantization="Q4_K_M", primary_suite="bfcl", candidate_scores=[SuiteScore(suite="bfcl", score=0.75)])
    await bus.publish(verdict)

    async def recorded() -> dict | None:
        v = await reg.get_version(registry_conn, name)
        return v.metrics if v is not None and v.metrics else None

    metrics = await eventually(recorded, 30, "the verdict in the version's metrics")
    assert metrics == {"evaluation_id": f"eval-{name}", "passed": True, "quantization": "Q4_K_M",
                       "primary_suite": "bfcl", "primary_score": 0.75, "scores": {"bfcl": 0.75}}
    v = await reg.get_version(registry_conn, name)
    assert v.status == "candidate" and await reg.get_aliases(registry_conn) == {"production": reg.BASE_VERSION}

    # A redelivery is answered by the inbox: the registry is not written again.
    await registry_conn.execute("UPDATE registry.model_versions SET metrics = '{}' WHERE version = $1", name)
    message_id = verdict.envelope.message_id

    def duplicates() -> int:
        return sum(1 for line in exporter.log_text().splitlines()
                   if "duplicate delivery ignored" in line and message_id in line)

    await bus.publish(verdict)
    await eventually(lambda: duplicates() == 1, 15, "the duplicate verdict to be seen")
    assert (await reg.get_version(registry_conn, name)).metrics == {}
