"""Hot reload (decision 0011) with fakes of our own ports: a loader whose loads the test
releases one by one, engines that remember being closed, a registry that answers as told."""

from __future__ import annotations

import asyncio

import pytest

from agent_runner.domain import RegistryUnavailableError
from agent_runner.model_slot import DesiredModel, ModelSlot
from agent_runner.service import AgentLoop, ReloadModel, RunAgent
from contracts import ModelDeployed, utcnow

from .conftest import ClosableEngine, FakeLoader, until

BUNDLED = DesiredModel("base@bundled", "bundled:", "", "production", utcnow())


class FakeRegistry:
    def __init__(self, answer: DesiredModel | None = None, error: Exception | None = None) -> None:
        self.answer = answer
        self.error = error

    async def production(self) -> DesiredModel | None:
        if self.error is not None:
            raise self.error
        return self.answer


def deployed(version: str, *, alias: str = "production") -> ModelDeployed:
    return ModelDeployed.create(correlation_id=f"deploy-{version}", model_version=version,
                                gguf_uri=f"s3://models/{version}.gguf", sha256="ab" * 32, alias=alias)


@pytest.fixture
async def reloading(metrics):
    """(slot, reload use case, loader, the engine serving at first); the worker runs meanwhile."""
    tasks: list[asyncio.Task] = []

    def start(loader: FakeLoader) -> tuple[ModelSlot, ReloadModel, ClosableEngine]:
        first = ClosableEngine(["old answer " * 5], model_version="v1", delay_s=0.005)
        slot = ModelSlot(first)
        reload_model = ReloadModel(slot, loader, metrics)
        tasks.append(asyncio.create_task(reload_model.run()))
        return slot, reload_model, first

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def sample(metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_a_deployment_is_loaded_warmed_and_swapped_in(reloading, metrics):
    loader = FakeLoader()
    slot, reload_model, first = reloading(loader)
    await reload_model(deployed("v2"))

    await until(lambda: slot.engine.model_version == "v2", what="v2 serving")
    new = loader.engines["v2"]
    assert len(new.prompts) == 1 and "Say OK." in new.prompts[0]  # warmed with one short completion
    await until(lambda: first.closed, what="the old engine closed")
    details = slot.describe()
    assert details["model_version"] == "v2" and details["reload_pending"] is False
    assert details["reloads"] == 1 and details["last_reload_at"] and details["last_reload_error"] is None
    assert sample(metrics, "agent_runner_serving_model_info", model_version="v2", engine="fake") == 1
    assert sample(metrics, "agent_runner_serving_model_info", model_version="v1", engine="fake") is None
    assert sample(metrics, "agent_runner_desired_model_info", model_version="v2") == 1
    assert sample(metrics, "agent_runner_model_reload_seconds_count", outcome="ok") == 1
    assert sample(metrics, "agent_runner_model_last_reload_timestamp_seconds") > 0


async def test_a_run_in_flight_finishes_on_the_old_engine_which_closes_after_it(reloading, metrics, fakes, store, sink):
    loader = FakeLoader()
    slot, reload_model, first = reloading(loader)
    loop = AgentLoop(server_tools={}, metrics=metrics)
    run_agent = RunAgent(loop=loop, slot=slot, store=store, sinks=lambda _: sink, metrics=metrics, max_attempts=3)
    running = asyncio.create_task(run_agent(fakes.request(run_id="long")))
    await until(lambda: first.prompts, what="the run to start on v1")

    await reload_model(deployed("v2"))
    await until(lambda: slot.engine.model_version == "v2", what="v2 serving")
    assert not running.done() and slot.in_flight(first) == 1
    assert not first.closed and slot.describe()["draining_engines"] == 1

    await running
    assert store.rows["long"]["model_version"] == "v1" and store.rows["long"]["outcome"] == "answered"
    await until(lambda: first.closed, what="the old engine closed once its run ended")
    assert slot.describe()["draining_engines"] == 0

    await run_agent(fakes.request(run_id="next"))
    assert store.rows["next"]["model_version"] == "v2"
    assert store.rows["next"]["answer"] == "answer from v2"


async def test_a_failed_load_keeps_the_current_model_serving(reloading, metrics):
    loader = FakeLoader(fail={"v2"})
    slot, reload_model, first = reloading(loader)
    await reload_model(deployed("v2"))

    await until(lambda: slot.status.failures == 1, what="the failure recorded")
    assert slot.engine is first and not first.closed
    details = slot.describe()
    assert details["model_version"] == "v1" and details["desired_model_version"] == "v2"
    assert details["reload_pending"] is True and details["reload_loading"] is None
    assert "sha256 mismatch" in details["last_reload_error"] and details["last_reload_error_version"] == "v2"
    assert sample(metrics, "agent_runner_model_reload_failures_total") == 1
    assert sample(metrics, "agent_runner_serving_model_info", model_version="v1", engine="fake") is None  # never set

    await reload_model(deployed("v3"))  # the next deployment is tried afresh
    await until(lambda: slot.engine.model_version == "v3", what="v3 serving")
    assert first.closed


async def test_a_model_that_fails_its_warm_up_is_closed_and_never_served(reloading):
    loader = FakeLoader(broken_warmup={"v2"})
    slot, reload_model, first = reloading(loader)
    await reload_model(deployed("v2"))

    await until(lambda: slot.status.failures == 1, what="the failure recorded")
    assert slot.engine is first and not first.closed
    assert loader.engines["v2"].closed  # loaded but unusable: closed, not leaked
    assert "warm-up crashed" in slot.status.last_error


async def test_the_newest_deployment_wins_while_a_load_is_under_way(reloading, metrics):
    loader = FakeLoader(gated=True)
    slot, reload_model, first = reloading(loader)
    await reload_model(deployed("v2"))
    await until(lambda: loader.started == ["v2"], what="v2 loading")
    assert slot.describe()["reload_loading"] == "v2"
    await reload_model(deployed("v3"))
    await reload_model(deployed("v4"))
    loader.release("v4")  # released early: only a load that is started waits on it
    loader.release("v2")

    await until(lambda: slot.engine.model_version == "v4", what="v4 serving")
    assert loader.started == ["v2", "v4"]  # v3 was overtaken before its turn: never loaded
    assert loader.engines["v2"].closed  # loaded, no longer wanted: thrown away, never served
    assert sample(metrics, "agent_runner_model_reload_seconds_count", outcome="superseded") == 1
    assert sample(metrics, "agent_runner_model_reload_seconds_count", outcome="ok") == 1
    await until(lambda: first.closed, what="v1 closed")


async def test_deploying_the_version_being_served_changes_nothing(reloading):
    loader = FakeLoader()
    slot, reload_model, first = reloading(loader)
    await reload_model(deployed("v1"))
    await asyncio.sleep(0.05)
    assert loader.started == [] and slot.engine is first and not first.closed


async def test_a_candidate_deployment_is_not_served_by_runners(reloading):
    loader = FakeLoader()
    slot, reload_model, first = reloading(loader)
    await reload_model(deployed("v9", alias="candidate"))
    await asyncio.sleep(0.05)
    assert loader.started == [] and slot.desired is None and slot.engine is first


async def test_start_up_serves_the_registry_production_version(metrics):
    slot = ModelSlot()
    loader = FakeLoader()
    production = DesiredModel("v5", "s3://models/v5.gguf", "cd" * 32, "production", utcnow())
    await ReloadModel(slot, loader, metrics).serve_production(FakeRegistry(production), BUNDLED)
    assert slot.engine.model_version == "v5" and loader.started == ["v5"]
    assert slot.describe()["reload_pending"] is False


@pytest.mark.parametrize("registry", [FakeRegistry(None), FakeRegistry(error=RegistryUnavailableError("db down"))],
                         ids=["empty", "unreachable"])
async def test_start_up_falls_back_to_the_bundled_model(metrics, registry):
    slot = ModelSlot()
    loader = FakeLoader()
    await ReloadModel(slot, loader, metrics).serve_production(registry, BUNDLED)
    assert slot.engine.model_version == "base@bundled" and loader.started == ["base@bundled"]


async def test_start_up_serves_the_bundled_model_while_production_does_not_load(metrics):
    slot = ModelSlot()
    loader = FakeLoader(fail={"v5"})
    production = DesiredModel("v5", "s3://models/v5.gguf", "cd" * 32, "production", utcnow())
    await ReloadModel(slot, loader, metrics).serve_production(FakeRegistry(production), BUNDLED)
    details = slot.describe()
    assert details["model_version"] == "base@bundled" and details["desired_model_version"] == "v5"
    assert details["reload_pending"] is True and "sha256 mismatch" in details["last_reload_error"]


async def test_start_up_fails_when_not_even_the_bundled_model_loads(metrics):
    slot = ModelSlot()
    with pytest.raises(RuntimeError, match="bundled"):
        await ReloadModel(slot, FakeLoader(fail={"base@bundled"}), metrics).serve_production(FakeRegistry(), BUNDLED)


async def test_a_run_before_any_model_is_loaded_is_a_transient_engine_error():
    from agent_runner.domain import EngineError

    with pytest.raises(EngineError), ModelSlot().lease():
        pass


async def test_the_serving_engine_cannot_be_retired():
    engine = ClosableEngine(["x"])
    with pytest.raises(ValueError):
        await ModelSlot(engine).retire(engine)
