"""Which engine a run executes on (decision 0018), with fakes of our own ports: a loader whose loads
the test may hold, engines that remember being closed, a registry that answers as told."""

from __future__ import annotations

import asyncio

import pytest

from agent_runner.domain import ModelNotServedError, RegistryUnavailableError
from agent_runner.model_slot import DesiredModel, ModelSlot
from agent_runner.service import AgentLoop, RunAgent, ServedModels
from contracts import utcnow

from .conftest import ClosableEngine, FakeLoader, until

MiB = 1024 * 1024


class Registry:
    """Aliases and versions as the registry would resolve them; counts the lookups."""

    def __init__(self, aliases: dict[str, str] | None = None, versions: tuple[str, ...] = (),
                 error: Exception | None = None) -> None:
        self.aliases = aliases or {}
        self.versions = set(versions) | set(self.aliases.values())
        self.error = error
        self.lookups: list[str] = []

    async def lookup(self, name: str) -> DesiredModel | None:
        self.lookups.append(name)
        if self.error is not None:
            raise self.error
        version = self.aliases.get(name, name)
        if version not in self.versions:
            return None
        return DesiredModel(version, f"s3://models/{version}.gguf", "ab" * 32, name, utcnow(), size_bytes=300 * MiB)


def served(loader: FakeLoader, registry: Registry, metrics, *, capacity: int = 1, available: int | None = 8192 * MiB,
           reserve_mb: int = 1024, clock=None) -> tuple[ServedModels, ClosableEngine]:
    production = ClosableEngine(["from production"], model_version="v1")
    extra = {"clock": clock} if clock else {}
    models = ServedModels(ModelSlot(production), loader, registry, metrics, capacity=capacity,
                          reserve_bytes=reserve_mb * MiB, available_bytes=lambda: available, **extra)
    return models, production


def sample(metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_no_model_production_and_its_version_run_on_the_slot_without_a_lookup(metrics):
    loader, registry = FakeLoader(), Registry({"candidate": "v2"})
    models, production = served(loader, registry, metrics)
    for asked in (None, "production", "v1"):
        with await models.lease(asked) as engine:
            assert engine is production
    assert registry.lookups == [] and loader.started == []


async def test_a_candidate_is_loaded_beside_production_and_held_for_later_runs(metrics):
    loader, registry = FakeLoader(), Registry({"candidate": "v2"})
    models, production = served(loader, registry, metrics)
    with await models.lease("candidate") as engine:
        assert engine.model_version == "v2" and models.describe()["extra_models"][0]["in_flight"] == 1
    with await models.lease("v2") as again:
        assert again is engine
    assert loader.started == ["v2"]  # loaded once
    with await models.lease(None) as default:
        assert default is production  # production still serves everything else
    assert models.describe()["extra_models"] == [
        {"model_version": "v2", "in_flight": 0, "gguf_uri": "s3://models/v2.gguf"}]
    assert sample(metrics, "agent_runner_extra_models") == 1
    assert sample(metrics, "agent_runner_extra_model_load_seconds_count", outcome="ok") == 1


async def test_an_alias_that_resolves_to_production_uses_the_slot(metrics):
    loader, registry = FakeLoader(), Registry({"candidate": "v1"}, versions=("v1",))
    models, production = served(loader, registry, metrics)
    with await models.lease("candidate") as engine:
        assert engine is production
    assert loader.started == []


async def test_runs_asking_for_the_same_version_at_once_share_one_load(metrics):
    loader, registry = FakeLoader(gated=True), Registry(versions=("v2",))
    models, _ = served(loader, registry, metrics)
    waiting = [asyncio.create_task(models.lease("v2")) for _ in range(3)]
    await until(lambda: loader.started == ["v2"], what="the load to start")
    assert models.describe()["extra_models_loading"] == ["v2"]
    loader.release("v2")
    leases = await asyncio.gather(*waiting)
    engines = set()
    for lease in leases:
        with lease as engine:
            engines.add(id(engine))
    assert len(engines) == 1 and loader.started == ["v2"]


async def test_the_least_recently_used_version_makes_room_and_closes_after_its_runs(metrics):
    loader, registry = FakeLoader(), Registry(versions=("v2", "v3", "v4"))
    models, _ = served(loader, registry, metrics, capacity=2)
    with await models.lease("v2"):
        pass
    held = await models.lease("v3")
    with held as v3:
        with await models.lease("v2"):  # v2 used again: v3 is now the least recent
            pass
        with await models.lease("v4"):
            pass
        assert [m["model_version"] for m in models.describe()["extra_models"]] == ["v2", "v4"]
        await asyncio.sleep(0.01)
        assert not v3.closed  # out of the pool, but a run still holds it
    await until(lambda: v3.closed, what="v3 closed once its run ended")
    assert not loader.engines["v2"].closed and not loader.engines["v4"].closed


async def test_unknown_names_and_an_unreadable_registry_are_refused_with_the_reason(metrics):
    models, _ = served(FakeLoader(), Registry(versions=("v2",)), metrics)
    with pytest.raises(ModelNotServedError, match="'v9' is neither an alias nor a version"):
        await models.lease("v9")
    down, _ = served(FakeLoader(), Registry(error=RegistryUnavailableError("cannot connect: refused")), metrics)
    with pytest.raises(ModelNotServedError, match="registry cannot be read: cannot connect"):
        await down.lease("candidate")


async def test_a_lookup_is_cached_briefly_because_an_alias_moves(metrics):
    now = [0.0]
    registry = Registry({"candidate": "v2"})
    models, _ = served(FakeLoader(), registry, metrics, clock=lambda: now[0])
    for _ in range(3):
        with await models.lease("candidate"):
            pass
    assert registry.lookups == ["candidate"]
    registry.aliases["candidate"] = "v3"
    registry.versions.add("v3")
    now[0] = 2.5
    with await models.lease("candidate") as engine:
        assert engine.model_version == "v3"


async def test_too_little_memory_refuses_the_load_with_the_numbers(metrics):
    loader = FakeLoader()
    models, _ = served(loader, Registry(versions=("v2",)), metrics, available=1200 * MiB, reserve_mb=1024)
    with pytest.raises(ModelNotServedError) as exc:
        await models.lease("v2")
    assert "needs 300 MiB, 1200 MiB are available and 1024 MiB must stay free" in str(exc.value)
    assert loader.started == [] and sample(metrics, "agent_runner_extra_model_load_seconds_count",
                                           outcome="refused") == 1


async def test_a_failed_load_refuses_the_run_and_the_next_run_tries_again(metrics):
    loader = FakeLoader(fail={"v2"})
    models, _ = served(loader, Registry(versions=("v2",)), metrics)
    with pytest.raises(ModelNotServedError, match="could not be loaded: .*sha256 mismatch"):
        await models.lease("v2")
    loader.fail.clear()
    with await models.lease("v2") as engine:
        assert engine.model_version == "v2"
    assert loader.started == ["v2", "v2"]


async def test_off_or_on_an_engine_that_cannot_switch_only_production_is_served(metrics):
    off, _ = served(FakeLoader(), Registry(versions=("v2",)), metrics, capacity=0)
    with pytest.raises(ModelNotServedError, match=r"production \(v1\) only \(RUNNER__EXTRA_MODELS=0\)"):
        await off.lease("v2")
    fixed_loader = FakeLoader()
    fixed_loader.reloads = False
    fixed, _ = served(fixed_loader, Registry(versions=("v2",)), metrics)
    with pytest.raises(ModelNotServedError, match="fake engine serves v1 only"):
        await fixed.lease("v2")


async def test_a_run_naming_a_version_runs_on_it_and_records_it(metrics, fakes, store, sink):
    loader, registry = FakeLoader(), Registry({"candidate": "v2"})
    models, production = served(loader, registry, metrics)
    run_agent = RunAgent(loop=AgentLoop(server_tools={}, metrics=metrics), models=models,
                         store=store, sinks=lambda _: sink, metrics=metrics, max_attempts=3)
    await run_agent(fakes.request(run_id="on-candidate", model="candidate"))
    await run_agent(fakes.request(run_id="on-production"))
    await run_agent(fakes.request(run_id="unknown", model="v9"))
    assert store.rows["on-candidate"]["model_version"] == "v2"
    assert store.rows["on-candidate"]["answer"] == "answer from v2"
    assert store.rows["on-production"]["model_version"] == "v1"
    assert store.rows["unknown"]["outcome"] == "error"
    assert store.rows["unknown"]["error"].startswith("model_not_served: options.model 'v9'")
    assert production.prompts and len(loader.engines["v2"].prompts) == 1


async def test_shutdown_closes_every_extra_model(metrics):
    loader = FakeLoader()
    models, _ = served(loader, Registry(versions=("v2",)), metrics)
    with await models.lease("v2"):
        pass
    await models.close()
    assert loader.engines["v2"].closed and models.describe()["extra_models"] == []


# ---------------------------------------------------------------------- canary routing (decision 0020)


class Canaries:
    """The registry's running canary as the test sets it; counts the reads."""

    def __init__(self, canary=None, error: Exception | None = None) -> None:
        self.current = canary
        self.error = error
        self.reads = 0

    async def canary(self):
        self.reads += 1
        if self.error is not None:
            raise self.error
        return self.current


def a_canary(version: str = "v2", share: float = 50.0, canary_id: str = "c1"):
    from modelregistry import Canary

    return Canary(canary_id=canary_id, version=version, production_version="v1", share_pct=share, mode="canary",
                  status="running", min_samples=30, max_duration_s=3600, started_by="op", started_at=utcnow())


def canary_served(loader, registry, metrics, canaries, **kwargs) -> tuple[ServedModels, ClosableEngine]:
    models, production = served(loader, registry, metrics, **kwargs)
    models.canaries = canaries
    return models, production


RUN_IDS = [f"run-{i}" for i in range(200)]


async def test_the_canary_takes_the_runs_its_hash_routes_and_production_the_rest(metrics):
    from modelregistry import canary_bucket

    loader, registry = FakeLoader(), Registry(versions=("v2",))
    canaries = Canaries(a_canary(share=30.0))
    models, production = canary_served(loader, registry, metrics, canaries)
    routed = []
    for run_id in RUN_IDS:
        with await models.lease(None, run_id=run_id) as engine:
            routed.append(engine.model_version)
            assert engine.model_version == ("v2" if canary_bucket(run_id) < 3000 else "v1")
    assert 0.15 < routed.count("v2") / len(routed) < 0.45  # about the share
    assert loader.started == ["v2"]  # loaded once beside production
    assert canaries.reads == 1  # read once within lookup_ttl_s
    assert sample(metrics, "agent_runner_canary_runs_total", route="candidate") == routed.count("v2")
    assert models.describe()["canary"] == {"canary_id": "c1", "model_version": "v2", "share_pct": 30.0,
                                           "mode": "canary", "state": "routing", "refused_because": None}


async def test_the_same_run_id_goes_the_same_way_on_another_runner(metrics):
    runs = RUN_IDS[:40]
    ways = []
    for _ in range(2):  # two runners (or one restarted) read the same canary from the registry
        loader, registry = FakeLoader(), Registry(versions=("v2",))
        models, _ = canary_served(loader, registry, metrics, Canaries(a_canary(share=50.0)))
        way = []
        for run_id in runs:
            with await models.lease(None, run_id=run_id) as engine:
                way.append(engine.model_version)
        ways.append(way)
    assert ways[0] == ways[1] and {"v1", "v2"} == set(ways[0])


async def test_a_run_that_names_its_model_is_not_rerouted_by_the_canary(metrics):
    loader, registry = FakeLoader(), Registry({"production": "v1"}, versions=("v2",))
    models, production = canary_served(loader, registry, metrics, Canaries(a_canary(share=100.0)))
    with await models.lease("production", run_id="run-1") as engine:
        assert engine is production


async def test_a_runner_without_room_refuses_the_canary_and_says_why(metrics, caplog):
    loader, registry = FakeLoader(), Registry(versions=("v2",))
    models, production = canary_served(loader, registry, metrics, Canaries(a_canary(share=100.0)),
                                       available=1200 * MiB, reserve_mb=1024)
    for run_id in RUN_IDS[:5]:
        with await models.lease(None, run_id=run_id) as engine:
            assert engine is production  # the runs still run, on production
    assert loader.started == []
    state = models.describe()["canary"]
    assert state["state"] == "refused" and "MiB are available" in state["refused_because"]
    assert sample(metrics, "agent_runner_canary_runs_total", route="refused") == 5
    refusals = [r for r in caplog.records if "refuses canary c1" in r.getMessage()]
    assert len(refusals) == 1  # said once per canary, not per run


async def test_extra_models_off_refuses_the_canary(metrics):
    loader, registry = FakeLoader(), Registry(versions=("v2",))
    models, production = canary_served(loader, registry, metrics, Canaries(a_canary(share=100.0)), capacity=0)
    with await models.lease(None, run_id="run-1") as engine:
        assert engine is production
    assert "RUNNER__EXTRA_MODELS=0" in models.describe()["canary"]["refused_because"]


async def test_an_unreadable_registry_keeps_the_last_canary(metrics):
    now = [0.0]
    loader, registry = FakeLoader(), Registry(versions=("v2",))
    canaries = Canaries(a_canary(share=100.0))
    models, _ = canary_served(loader, registry, metrics, canaries, clock=lambda: now[0])
    with await models.lease(None, run_id="run-1") as engine:
        assert engine.model_version == "v2"
    canaries.error = RegistryUnavailableError("db down")
    now[0] += 10
    with await models.lease(None, run_id="run-1") as engine:
        assert engine.model_version == "v2"
    canaries.error, canaries.current = None, None  # the canary ended
    now[0] += 10
    with await models.lease(None, run_id="run-1") as engine:
        assert engine.model_version == "v1" and models.describe()["canary"] is None


async def test_a_canary_whose_load_failed_is_not_loaded_again_for_every_run(metrics):
    now = [0.0]
    loader, registry = FakeLoader(fail={"v2"}), Registry(versions=("v2",))
    models, production = canary_served(loader, registry, metrics, Canaries(a_canary(share=100.0)),
                                       clock=lambda: now[0])
    models.lookup_ttl_s = 1000.0
    for run_id in RUN_IDS[:4]:
        with await models.lease(None, run_id=run_id) as engine:
            assert engine is production
    assert loader.started == ["v2"] and "sha256 mismatch" in models.describe()["canary"]["refused_because"]
    assert sample(metrics, "agent_runner_canary_runs_total", route="refused") == 4
    now[0] += models.refusal_retry_s + 1  # a minute later it tries again
    loader.fail.clear()
    with await models.lease(None, run_id="run-1") as engine:
        assert engine.model_version == "v2"
    assert loader.started == ["v2", "v2"] and models.describe()["canary"]["state"] == "routing"
