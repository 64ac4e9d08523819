"""The loop's flow at the service layer, over fakes of its own ports (gateway, event feed,
probes): stage order, what it sends, how it ends."""

from __future__ import annotations

import asyncio
from typing import Any

from rich.console import Console

from contracts import (
    DatasetBuilt,
    EvaluationCompleted,
    ExportCompleted,
    ExportedFile,
    ModelDeployed,
    ModelPromoted,
    SuiteScore,
    TrainingCompleted,
    TrainingProgress,
    TrainingRequested,
)
from loopdemo.loop import ClosedLoop, LoopConfig
from loopdemo.report import summarise
from loopdemo.tasks import load_tasks, split

BASE, NEW = "gemma3-270m-q4_k_m@base", "gemma3-270m-abcd1234"
PARTS = split(load_tasks()).limited(traffic=9, heldout=6)
BY_QUESTION = {t.messages()[0]["content"]: t for t in [*PARTS.traffic, *PARTS.heldout]}


class FakeWorld:
    """What the stack would do: the served model answers wrong until the new one is deployed."""

    def __init__(self, *, gate_passes: bool = True) -> None:
        self.serving = BASE
        self.gate_passes = gate_passes
        self.runs: list[dict[str, Any]] = []
        self.feedback: list[tuple[str, dict[str, Any]]] = []
        self.retrains: list[dict[str, Any]] = []
        self.events: list[Any] = []


class FakeGateway:
    def __init__(self, world: FakeWorld) -> None:
        self.world = world

    async def token(self, refresh: bool = False) -> str:
        return "t"

    async def models(self) -> dict[str, Any]:
        return {"aliases": {"production": self.world.serving}, "versions": []}

    async def run(self, request: dict[str, Any], wait_s: float) -> dict[str, Any]:
        task = BY_QUESTION[request["messages"][0]["content"]]
        run_id = f"run-{len(self.world.runs)}"
        self.world.runs.append({"run_id": run_id, "request": request, "model": self.world.serving})
        if self.world.serving == NEW:
            calls = task.reference_calls()
        else:  # the base model calls the first tool it sees with nothing in it
            calls = [{"name": task.function[0]["name"], "arguments": {}}]
        steps = [{"kind": "tool_call", "tool_call": {"id": f"c{i}", **c}, "valid": True} for i, c in enumerate(calls)]
        return {"run_id": run_id, "status": "completed", "outcome": "client_tool_call", "steps": steps,
                "model_version": self.world.serving}

    async def feedback(self, run_id: str, body: dict[str, Any]) -> str:
        self.world.feedback.append((run_id, body))
        return f"fb-{len(self.world.feedback)}"

    async def retrain(self, body: dict[str, Any]) -> str:
        self.world.retrains.append(body)
        self.world.events.extend(_chain("req-1", self.world.gate_passes))
        return "req-1"

    async def close(self) -> None:
        pass


def _chain(request_id: str, passed: bool) -> list[Any]:
    job = "job-1"
    return [
        DatasetBuilt.create(correlation_id=request_id, dataset_id="ds-1", version=1, train_uri="s3://b/t",
                            val_uri="s3://b/v", manifest_uri="s3://b/m", counts={"train": 9, "val": 0}),
        TrainingRequested.create(correlation_id=request_id, job_id=job, dataset_id="ds-1", train_uri="s3://b/t",
                                 base_model="bundled"),
        TrainingProgress.create(correlation_id=request_id, job_id=job, step=1, total_steps=2, loss=2.0),
        TrainingCompleted.create(correlation_id=request_id, job_id=job, dataset_id="ds-1", base_model="bundled",
                                 adapter_uri="s3://b/a", steps=2),
        ExportCompleted.create(correlation_id=request_id, job_id=job, model_version=NEW, files=[
            ExportedFile(uri="s3://b/q4.gguf", sha256="ab", size_bytes=1, kind="gguf", quantization="Q4_K_M")]),
        EvaluationCompleted.create(correlation_id=request_id, evaluation_id="ev-1", job_id=job, candidate=NEW,
                                   passed=passed, quantization="Q4_K_M" if passed else None,
                                   candidate_scores=[SuiteScore(suite="demo-heldout", score=0.9 if passed else 0.1)],
                                   reasons=[] if passed else ["FAIL demo-heldout: 0.1000 is below the threshold"]),
        *([ModelPromoted.create(correlation_id=request_id, model_version=NEW, job_id=job, evaluation_id="ev-1",
                                adapter_uri="s3://b/a", base_model="bundled"),
           ModelDeployed.create(correlation_id=request_id, model_version=NEW, gguf_uri="s3://b/q4.gguf", sha256="ab",
                                previous_version=BASE)] if passed else []),
    ]


class FakeFeed:
    def __init__(self, world: FakeWorld) -> None:
        self.world = world

    async def __aenter__(self) -> FakeFeed:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def next(self, timeout: float) -> Any:
        await asyncio.sleep(0)
        if not self.world.events:
            return None
        msg = self.world.events.pop(0)
        if isinstance(msg, ModelDeployed):
            self.world.serving = NEW  # the runner reloads
        return msg


class FakeProbes:
    def __init__(self, world: FakeWorld, ready: int = 200) -> None:
        self.world = world
        self.ready = ready

    async def gateway_ready(self) -> tuple[int, str]:
        return self.ready, "{}"

    async def runner_details(self) -> dict[str, Any]:
        return {"model_version": self.world.serving, "last_reload_s": 1.5}

    async def miner_intake(self) -> dict[str, int]:
        return {"FeedbackSubmitted": len(self.world.feedback), "InteractionLogged": len(self.world.runs)}


def _loop(world: FakeWorld, probes: FakeProbes | None = None, **options: Any) -> ClosedLoop:
    cfg = LoopConfig(gateway_url="http://gw", broker_url="amqp://x", runner_url="http://r", miner_url="http://m",
                     api_key="k", concurrency=3, settle_timeout_s=2, **options)
    return ClosedLoop(cfg, Console(record=True, width=160), gateway=FakeGateway(world), feed=FakeFeed(world),
                      probes=probes or FakeProbes(world))


def test_the_loop_runs_every_stage_in_order_and_ends_on_the_new_model():
    world = FakeWorld()
    result = asyncio.run(_loop(world).run(PARTS))
    assert result.ok, result.reason
    before, after = summarise(result.before), summarise(result.after)
    assert before.model_versions == (BASE,) and after.model_versions == (NEW,)
    assert after.accuracy > before.accuracy
    assert [s[0] for s in result.stages][:3] == ["stack ready", "held-out replay on production (before)",
                                                 "traffic through the gateway"]
    assert all(seconds is not None for _, seconds, _ in result.stages)
    assert result.tracker.deployed.model_version == NEW


def test_runs_use_client_side_tools_one_turn_and_feedback_corrects_wrong_calls():
    world = FakeWorld()
    asyncio.run(_loop(world).run(PARTS))
    request = world.runs[0]["request"]
    assert request["options"]["server_tools"] is False and request["options"]["max_steps"] == 1
    assert request["tools"][0]["type"] == "function"
    traffic_ids = {r["run_id"] for r in world.runs[len(PARTS.heldout): len(PARTS.heldout) + len(PARTS.traffic)]}
    assert {run_id for run_id, _ in world.feedback} == traffic_ids, "feedback on every traffic run, nothing else"
    corrected = [b for _, b in world.feedback if b["rating"] == -1]
    assert corrected and all("corrected_tool_calls" in b or "corrected_answer" in b for b in corrected)


def test_the_retrain_mines_only_runs_after_the_heldout_replay_with_demo_training_options():
    world = FakeWorld()
    asyncio.run(_loop(world).run(PARTS))
    (body,) = world.retrains
    assert body["dataset"]["sources"] == ["mined"] and body["dataset"]["since"]
    assert body["training"]["max_steps"] >= 1 and body["training"]["learning_rate"] > 0
    assert "shape_weights" not in body["dataset"], "no --shape-weight: the log-miner's defaults"


def test_shape_weights_given_to_the_loop_travel_with_its_retrain():
    world = FakeWorld()
    asyncio.run(_loop(world, shape_weights={"no_call": 1.0, "parallel": 3.0}).run(PARTS))
    (body,) = world.retrains
    assert body["dataset"]["shape_weights"] == {"no_call": 1.0, "parallel": 3.0}


def test_a_rejected_candidate_fails_the_loop_with_the_gates_reason_and_no_after_replay():
    world = FakeWorld(gate_passes=False)
    loop = _loop(world)
    result = asyncio.run(loop.run(PARTS))
    assert not result.ok and "gate rejected" in result.reason and "below the threshold" in result.reason
    assert result.after == []
    assert loop.board["evaluation"].state == "failed"
    assert world.serving == BASE


def test_a_gateway_that_is_not_ready_stops_the_loop_before_any_run():
    world = FakeWorld()
    result = asyncio.run(_loop(world, FakeProbes(world, ready=503)).run(PARTS))
    assert not result.ok and "not ready (503)" in result.reason
    assert world.runs == []


class SteppingClock:
    """A clock that moves one tick per reading and ten per event delivered (work takes time)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


def test_each_followed_stage_is_timed_from_the_end_of_the_one_before():
    world = FakeWorld()
    loop = _loop(world)
    clock = SteppingClock()
    loop.board.clock = clock
    deliver = loop.feed.next

    async def slow_next(timeout: float) -> Any:
        clock.now += 10
        return await deliver(timeout)

    loop.feed.next = slow_next
    asyncio.run(loop.run(PARTS))
    for earlier, later in (("training", "export"), ("export", "evaluation"), ("evaluation", "promotion")):
        gap = loop.board[later].started - loop.board[earlier].ended
        assert 0 < gap < 10, f"{later} must start when {earlier} ends, not when its own first event comes"
