"""Composition root: settings → adapters → use cases → app. The only module that reads
settings and imports concrete adapters."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fastapi import FastAPI
from faststream.rabbit import RabbitBroker

from contracts import new_id
from screening import default_screener
from screening.policy import ToolScreen
from modelkit.base_model import BUNDLED_MODEL_VERSION, bundled_gguf_path
from servicekit.app import create_service_app
from servicekit.artifacts import ArtifactStore
from servicekit.logs import setup_logging
from servicekit.messaging import delete_retired_queues, make_broker
from servicekit.runtime import artifact_store, standard_runtime
from servicekit.settings import BrokerSettings

from . import SERVICE, handlers
from .adapters.host_memory import available_bytes
from .adapters.model_loaders import FixedEngine, GgufFiles, LlamaCppLoader, LlamaParams, OllamaLoader, bundled_model
from .adapters.postgres_runs import PostgresRunStore
from .adapters.rabbit_steps import reply_sinks
from .adapters.registry_reader import RegistryModels
from .metrics import RunnerMetrics
from .model_slot import ModelSlot
from .ports import Engine, EngineLoader, Tool
from .service import AgentLoop, RecordDeployment, ReloadModel, RunAgent, ServedModels
from .settings import AgentRunnerSettings, EngineSettings, ToolSettings, split_csv
from .tools import load_tools

logger = logging.getLogger("agent_runner.bootstrap")


def build_engine(engine: EngineSettings, *, ollama_host: str, n_seq_max: int = 1) -> Engine:
    if engine.kind == "llamacpp":
        from .adapters.llamacpp_engine import LlamaCppEngine

        path = Path(engine.model_path) if engine.model_path else bundled_gguf_path()
        version = engine.model_version or (path.stem if engine.model_path else BUNDLED_MODEL_VERSION)
        return LlamaCppEngine.load(
            str(path), model_version=version, n_ctx=engine.n_ctx, n_threads=engine.n_threads,
            use_extra_bufts=engine.use_extra_bufts, repeat_penalty=engine.repeat_penalty, seed=engine.seed,
            n_seq_max=n_seq_max,
        )
    if engine.kind == "ollama":
        from .adapters.ollama_engine import OllamaEngine

        if not engine.ollama_model:
            raise SystemExit("missing required setting: ENGINE__OLLAMA_MODEL (ENGINE__KIND=ollama)")
        return OllamaEngine(ollama_host, engine.ollama_model, model_version=engine.model_version,
                            keep_alive=engine.ollama_keep_alive, timeout_s=engine.request_timeout_s, seed=engine.seed)
    if engine.kind == "openai":
        from .adapters.openai_engine import OpenAIEngine

        if not engine.openai_base_url or not engine.openai_model:
            raise SystemExit("missing required settings: ENGINE__OPENAI_BASE_URL, ENGINE__OPENAI_MODEL (ENGINE__KIND=openai)")
        key = engine.openai_api_key.get_secret_value() if engine.openai_api_key else None
        return OpenAIEngine(engine.openai_base_url, engine.openai_model, api_key=key,
                            model_version=engine.model_version, timeout_s=engine.request_timeout_s, seed=engine.seed)
    from .adapters.scripted_engine import ScriptedEngine

    return ScriptedEngine(engine.script, model_version=engine.model_version or "scripted")


def build_tools(tools: ToolSettings) -> dict[str, Tool]:
    enabled = split_csv(tools.enabled) if tools.enabled is not None else None
    options = {
        "python": {
            "bwrap": tools.python_bwrap, "python": tools.python_executable, "timeout_s": tools.python_timeout_s,
            "cpu_s": tools.python_cpu_s, "memory_mb": tools.python_memory_mb,
            "max_output_bytes": tools.python_max_output_bytes,
        },
        "http_get": {
            "allowlist": split_csv(tools.http_allowlist), "timeout_s": tools.http_timeout_s,
            "max_bytes": tools.http_max_bytes,
        },
    }
    return load_tools(enabled, options)


def tool_screen(settings: AgentRunnerSettings) -> ToolScreen | None:
    """Tool output screened before the model reads it (SCREENING__TOOL; None when off)."""
    if settings.screening.tool == "off":
        return None
    return ToolScreen(default_screener(settings.screening.mode), settings.screening.tool)


def build_loader(engine: EngineSettings, *, store: ArtifactStore, ollama_host: str,
                 n_seq_max: int = 1) -> EngineLoader:
    """How this runner serves a deployed model version (see adapters/model_loaders.py)."""
    if engine.kind == "llamacpp":
        cache = Path(engine.cache_dir) if engine.cache_dir else Path(
            os.environ.get("AGENTLOOP_MODEL_CACHE", Path.home() / ".cache" / "agentloop")) / "models"
        params = LlamaParams(n_ctx=engine.n_ctx, n_threads=engine.n_threads, use_extra_bufts=engine.use_extra_bufts,
                             repeat_penalty=engine.repeat_penalty, seed=engine.seed, n_seq_max=n_seq_max)
        return LlamaCppLoader(GgufFiles(store, cache), params)
    if engine.kind == "ollama":
        return OllamaLoader(ollama_host, keep_alive=engine.ollama_keep_alive, timeout_s=engine.request_timeout_s,
                            seed=engine.seed)
    return FixedEngine(engine.kind)


def build_broker(settings: BrokerSettings, *, instance_id: str = "INSTANCE_ID") -> RabbitBroker:
    """Every subscriber declared, nothing connected (also feeds the AsyncAPI document)."""
    broker = make_broker(settings.url, prefetch=settings.prefetch, app_id=SERVICE)
    handlers.register(broker, delivery_limit=settings.delivery_limit, instance_id=instance_id)
    return broker


def build_app(settings: AgentRunnerSettings, *, engine: Engine | None = None) -> FastAPI:
    setup_logging(SERVICE, settings.log.level, settings.log.json_format)
    # Unique per process: it names this instance's exclusive deployments queue (a pid alone
    # repeats across containers).
    instance = settings.instance_id or f"{SERVICE}-{new_id()[:12]}"
    artifacts = artifact_store(settings.s3)
    rt = standard_runtime(SERVICE, settings, lambda b: build_broker(b, instance_id=instance), artifacts=artifacts)
    # The per-instance deployments queue dead-letters into one shared, durable DLQ.
    own_queue = handlers.deployments_queue(instance).name
    rt.work_queues = [handlers.DEPLOYMENTS_DLQ_KEY if q == own_queue else q for q in rt.work_queues]
    metrics = RunnerMetrics(rt.registry)
    # Staging is in the store's record statement; its outbox publishes after commit, marks in
    # batches, and relays what a crash left behind.
    store = PostgresRunStore(rt.db, rt.broker)

    # llama.cpp without an explicit file serves the registry's production version (loaded at
    # start-up, below); an explicit file or another engine kind is built here.
    from_registry = engine is None and settings.engine.kind == "llamacpp" and not settings.engine.model_path
    if not from_registry:
        engine = engine or build_engine(settings.engine, ollama_host=settings.ollama_host,
                                        n_seq_max=settings.runner.groupthink_max_samples)
        metrics.serving(engine.model_version, engine.name)
    slot = ModelSlot(engine)
    loader = build_loader(settings.engine, store=artifacts, ollama_host=settings.ollama_host,
                          n_seq_max=settings.runner.groupthink_max_samples)
    reload_model = ReloadModel(slot, loader, metrics)
    # Engines that cannot switch models only record the wanted version (and say so).
    deployments = reload_model if loader.reloads else RecordDeployment(slot)
    rt.broker.context.set_global(handlers.DEPLOYMENTS_KEY, deployments)
    if loader.reloads:
        rt.background.append(reload_model.run)
    tools = build_tools(settings.tools)
    loop = AgentLoop(server_tools=tools, metrics=metrics, token_flush_chars=settings.runner.token_flush_chars,
                     token_flush_ms=settings.runner.token_flush_ms,
                     groupthink_max_samples=settings.runner.groupthink_max_samples,
                     constrained=settings.engine.constrained, tool_screen=tool_screen(settings))
    registry = RegistryModels(settings.database.url)
    models = ServedModels(slot, loader, registry, metrics, capacity=settings.runner.extra_models,
                          reserve_bytes=settings.runner.model_memory_reserve_mb * 1024 * 1024,
                          available_bytes=available_bytes, canaries=registry)
    run_agent = RunAgent(loop=loop, models=models, store=store, sinks=reply_sinks(rt.broker),
                         legacy_events=settings.runner.legacy_events,
                         metrics=metrics, max_attempts=settings.broker.delivery_limit)
    rt.broker.context.set_global(handlers.RUN_AGENT_KEY, run_agent)

    async def serve_production() -> None:
        await reload_model.serve_production(registry, bundled_model(BUNDLED_MODEL_VERSION))

    async def close_engines() -> None:
        await models.close()
        await reload_model.close()
        if slot.loaded:
            await slot.engine.close()

    rt.checks["engine"] = lambda: slot.engine.ping()
    rt.details = lambda: {**slot.describe(), **models.describe(), "instance": instance, "server_tools": sorted(tools)}
    rt.add_outbox(store.outbox)
    # Upgrade step: before per-instance deployments queues (decision 0011) every replica shared
    # the durable `agent-runner.model.deployed.v1`; nothing consumes it any more.
    rt.on_startup.append(lambda: delete_retired_queues(rt.broker, list(handlers.RETIRED_QUEUES)))
    if from_registry:
        rt.on_startup.append(serve_production)  # before the broker starts: no run without a model
    rt.on_shutdown += [close_engines]
    app = create_service_app(rt)
    app.state.slot = slot
    return app
