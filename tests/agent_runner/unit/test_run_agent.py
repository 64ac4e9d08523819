"""Exactly-once recording of a run, failures, and the model slot, with fakes of our ports."""

from __future__ import annotations

import asyncio

import pytest

from agent_runner.domain import EngineError, PromptTooLongError
from agent_runner.model_slot import ModelSlot
from agent_runner.service import AgentLoop, RecordDeployment, RunAgent, completed_id, failed_id, finished_id, logged_id
from agent_runner.tools.calculator import CalculatorTool
from contracts import (
    AgentRunCompleted,
    AgentRunFailed,
    AgentRunFinished,
    FunctionSpec,
    InteractionLogged,
    ModelDeployed,
    ToolSpec,
)


def build(metrics, store, sink, engine, *, max_attempts: int = 3) -> tuple[RunAgent, ModelSlot]:
    slot = ModelSlot(engine)
    loop = AgentLoop(server_tools={"calculator": CalculatorTool()}, metrics=metrics)
    run_agent = RunAgent(loop=loop, slot=slot, store=store, sinks=lambda reply_to: sink, metrics=metrics,
                         max_attempts=max_attempts)
    return run_agent, slot


async def test_a_run_is_recorded_with_its_outcome_messages(metrics, fakes, store, sink):
    run_agent, _ = build(metrics, store, sink, fakes.Engine(["391"]))
    request = fakes.request(run_id="r1")
    await run_agent(request)

    row = store.rows["r1"]
    assert row["outcome"] == "answered" and row["answer"] == "391"
    assert row["model_version"] == "fake-v1" and row["engine"] == "fake" and row["subject"] == "tester"
    assert row["messages"][-1] == {"role": "assistant", "content": "391"}
    completed, logged, finished = store.published
    assert isinstance(completed, AgentRunCompleted) and completed.envelope.message_id == completed_id("r1")
    assert isinstance(logged, InteractionLogged) and logged.envelope.message_id == logged_id("r1")
    assert completed.envelope.causation_id == request.envelope.message_id
    assert logged.steps == completed.steps and logged.subject == "tester"
    # the one outcome event carries what the gateway's index and the log-miner read
    assert isinstance(finished, AgentRunFinished) and finished.envelope.message_id == finished_id("r1")
    assert (finished.status, finished.outcome, finished.answer) == ("completed", "answered", "391")
    assert finished.steps == completed.steps and finished.messages == logged.messages
    assert finished.subject == "tester" and finished.envelope.causation_id == request.envelope.message_id
    assert sink.finals == [completed]
    assert metrics.registry.get_sample_value("agent_runner_runs_total", {"outcome": "answered"}) == 1


async def test_with_the_legacy_events_off_only_the_finished_event_goes_out_and_answers_the_requester(
        metrics, fakes, store, sink):
    run_agent, _ = build(metrics, store, sink, fakes.Engine(["391"]))
    run_agent.legacy_events = False
    await run_agent(fakes.request(run_id="r1b"))
    (finished,) = store.published
    assert isinstance(finished, AgentRunFinished) and finished.answer == "391"
    assert sink.finals == [finished]


async def test_the_requester_gets_the_result_once_recorded_before_the_events_go_out(metrics, fakes):
    order: list[str] = []

    class Store(fakes.Store):
        async def record(self, record):
            order.append("record")
            return await super().record(record)

        async def publish(self, *messages):
            order.append("publish")
            await super().publish(*messages)

    class Sink(fakes.Sink):
        async def final(self, message):
            order.append("final")
            await super().final(message)

    run_agent, _ = build(metrics, Store(), Sink(), fakes.Engine(["391"]))
    await run_agent(fakes.request(run_id="r-order"))
    assert order == ["record", "final", "publish"]


async def test_a_processed_message_is_not_run_again_but_its_result_is_resent(metrics, fakes, store, sink):
    engine = fakes.Engine(["391"])
    run_agent, _ = build(metrics, store, sink, engine)
    request = fakes.request(run_id="r2")
    await run_agent(request)
    await run_agent(request)

    assert len(engine.prompts) == 1
    assert len(store.published) == 3  # from the first delivery only
    assert [m.envelope.message_id for m in sink.finals] == [completed_id("r2")] * 2


async def test_concurrent_deliveries_to_one_runner_run_once(metrics, fakes, store, sink):
    engine = fakes.Engine(["391"], delay_s=0.01)
    run_agent, _ = build(metrics, store, sink, engine)
    request = fakes.request(run_id="r3")
    await asyncio.gather(run_agent(request), run_agent(request))

    assert len(engine.prompts) == 1  # the second delivery waited, then found the run recorded
    assert len(store.rows) == 1 and len(store.published) == 3
    assert len(sink.finals) == 2  # the result, then the re-send for the duplicate (same message id)


async def test_a_run_recorded_meanwhile_by_another_replica_is_not_recorded_twice(metrics, fakes, store, sink):
    engine = fakes.Engine(["391"], delay_s=0.01)
    replica_a, _ = build(metrics, store, sink, engine)
    replica_b, _ = build(metrics, store, sink, engine)
    request = fakes.request(run_id="r3b")
    await asyncio.gather(replica_a(request), replica_b(request))

    assert len(engine.prompts) == 2  # both ran ...
    assert len(store.rows) == 1 and len(store.published) == 3  # ... one was recorded and published
    assert len(sink.finals) == 1


async def test_an_engine_error_is_retried_while_attempts_remain(metrics, fakes, store, sink):
    run_agent, _ = build(metrics, store, sink, fakes.Engine([], error=EngineError("down")), max_attempts=3)
    with pytest.raises(EngineError):
        await run_agent(fakes.request(run_id="r4"), attempt=1)
    assert store.rows == {}


async def test_the_last_attempt_records_the_failure(metrics, fakes, store, sink):
    run_agent, _ = build(metrics, store, sink, fakes.Engine([], error=EngineError("down")), max_attempts=3)
    await run_agent(fakes.request(run_id="r5"), attempt=3)

    failed, logged, finished = store.published
    assert isinstance(failed, AgentRunFailed) and failed.envelope.message_id == failed_id("r5")
    assert failed.error_code == "engine_unavailable" and "down" in failed.reason
    assert logged.outcome == "error"
    assert (finished.status, finished.error_code, finished.error) == ("failed", "engine_unavailable", failed.reason)
    assert store.rows["r5"]["outcome"] == "error" and store.rows["r5"]["attempt"] == 3
    assert sink.finals == [failed]


async def test_a_prompt_too_long_fails_at_once(metrics, fakes, store, sink):
    run_agent, _ = build(metrics, store, sink, fakes.Engine([], error=PromptTooLongError("4100 tokens")))
    await run_agent(fakes.request(run_id="r6"), attempt=1)
    assert store.published[0].error_code == "prompt_too_long"


async def test_a_tool_with_an_invalid_schema_fails_the_run(metrics, fakes, store, sink):
    broken = ToolSpec(function=FunctionSpec(name="broken", parameters={"type": "no-such-type"}))
    run_agent, _ = build(metrics, store, sink, fakes.Engine(["x"]))
    await run_agent(fakes.request(run_id="r7", tools=[broken]))
    assert store.published[0].error_code == "invalid_tool_schema"


async def test_a_run_in_flight_keeps_its_engine_when_the_slot_is_swapped(metrics, fakes, store, sink):
    old = fakes.Engine(["slow answer " * 5], delay_s=0.01, model_version="v1")
    run_agent, slot = build(metrics, store, sink, old)
    task = asyncio.create_task(run_agent(fakes.request(run_id="r8")))
    while not old.prompts:
        await asyncio.sleep(0.001)
    previous = slot.swap(fakes.Engine(["new"], model_version="v2"))
    await task

    assert previous is old
    assert store.rows["r8"]["model_version"] == "v1"
    await run_agent(fakes.request(run_id="r9"))
    assert store.rows["r9"]["model_version"] == "v2"


async def test_a_deployment_is_recorded_as_the_desired_model_without_a_reload(fakes):
    slot = ModelSlot(fakes.Engine(["x"], model_version="base"))
    event = ModelDeployed.create(correlation_id="m1", model_version="v7", gguf_uri="s3://b/v7.gguf", sha256="ab")
    await RecordDeployment(slot)(event)

    assert slot.engine.model_version == "base"
    details = slot.describe()
    assert details["desired_model_version"] == "v7" and details["reload_pending"] is True
    assert details["model_version"] == "base" and details["engine"] == "fake"


@pytest.mark.parametrize("asked", [None, "production", "fake-v1"])
async def test_a_run_may_name_the_served_model_by_version_or_alias(metrics, fakes, store, sink, asked):
    run_agent, _ = build(metrics, store, sink, fakes.Engine(["391"]))
    await run_agent(fakes.request(run_id="m1", model=asked))
    (completed, _logged, _finished) = store.published
    assert isinstance(completed, AgentRunCompleted) and completed.model_version == "fake-v1"


async def test_a_run_asking_for_a_version_not_served_fails_with_a_clear_code(metrics, fakes, store, sink):
    engine = fakes.Engine(["391"])
    run_agent, _ = build(metrics, store, sink, engine)
    await run_agent(fakes.request(run_id="m2", model="gemma3-270m-candidate"))
    failed, _logged, _finished = store.published
    assert isinstance(failed, AgentRunFailed) and failed.error_code == "model_not_served"
    assert "serves fake-v1" in failed.reason and "gemma3-270m-candidate" in failed.reason
    assert engine.prompts == []  # nothing was generated


async def started(metrics, fakes, store, sink, run_id: str):
    """A run whose model turn is decoding (slowly): the RunAgent, its engine and the running task."""
    engine = fakes.Engine(["a very long answer " * 50], chunk_size=2, delay_s=0.01)
    run_agent, _ = build(metrics, store, sink, engine)
    running = asyncio.create_task(run_agent(fakes.request(run_id=run_id)))
    while not engine.prompts:
        await asyncio.sleep(0.005)
    return run_agent, engine, running


async def test_a_run_its_requester_cancels_stops_its_turn_and_is_recorded_as_cancelled(metrics, fakes, store, sink):
    run_agent, engine, running = await started(metrics, fakes, store, sink, "rc")
    assert run_agent.cancel("other-run", "gone") is False  # not running here: nothing to do
    assert run_agent.cancel("rc", "the client dropped its stream") is True
    await asyncio.wait_for(running, 5)
    assert engine.closed_generations == 1  # the engine's generation was closed, not run to its end
    row = store.rows["rc"]
    assert row["outcome"] == "error"
    finished = store.published[-1]
    assert isinstance(finished, AgentRunFinished) and finished.status == "failed"
    assert finished.error_code == "cancelled" and "dropped its stream" in finished.error


async def test_a_cancel_heard_before_the_run_arrives_refuses_it_when_it_does(metrics, fakes, store, sink):
    engine = fakes.Engine(["391"])
    run_agent, _ = build(metrics, store, sink, engine)
    assert run_agent.cancel("early", "the client dropped its stream") is False  # not running yet: remembered
    await run_agent(fakes.request(run_id="early"))
    await run_agent(fakes.request(run_id="other"))
    assert engine.prompts and len(engine.prompts) == 1  # only "other" ran
    finished = [m for m in store.published if isinstance(m, AgentRunFinished)]
    assert [(f.run_id, f.error_code) for f in finished] == [("early", "cancelled"), ("other", None)]
    assert "before the run started" in finished[0].error


async def test_remembered_cancels_are_bounded_by_count_and_age(metrics, fakes, store, sink, monkeypatch):
    from agent_runner.service import run_agent as module

    now = [0.0]
    run_agent = RunAgent(loop=AgentLoop(server_tools={}, metrics=metrics), slot=ModelSlot(fakes.Engine(["391"])),
                         store=store, sinks=lambda _: sink, metrics=metrics, max_attempts=3, clock=lambda: now[0])
    monkeypatch.setattr(module, "EARLY_CANCELS_KEPT", 3)
    for i in range(5):
        run_agent.cancel(f"r{i}", "gone")
    assert list(run_agent._cancelled_early) == ["r2", "r3", "r4"]
    now[0] = module.EARLY_CANCEL_TTL_S + 1
    await run_agent(fakes.request(run_id="r4"))  # too old to count: it runs
    assert store.rows["r4"]["outcome"] == "answered"


async def test_stopping_the_service_mid_run_is_not_a_cancel(metrics, fakes, store, sink):
    run_agent, _, running = await started(metrics, fakes, store, sink, "rs")
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert "rs" not in store.rows and run_agent.cancel("rs", "late") is False  # redelivered, not recorded
