"""Composition root: settings → adapters → use cases → app. The only module that reads
settings and imports concrete adapters."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fastapi import FastAPI

from modelkit.base_model import BUNDLED_MODEL_VERSION, bundled_gguf_path
from servicekit.app import ServiceRuntime, create_service_app
from servicekit.artifacts import ArtifactStore
from servicekit.db import make_engine
from servicekit.health import broker_check, postgres_check, s3_check
from servicekit.logs import setup_logging
from servicekit.messaging import make_broker
from servicekit.metrics import message_metrics_middleware, new_registry
from servicekit.outbox import Outbox
from servicekit.settings import load

from . import handlers
from .adapters import tables
from .adapters.postgres_runs import PostgresRunStore
from .adapters.rabbit_steps import reply_sinks
from .metrics import RunnerMetrics
from .model_slot import ModelSlot
from .ports import Engine, Tool
from .service import AgentLoop, RecordDeployment, RunAgent
from .settings import AgentRunnerSettings, EngineSettings, ToolSettings, split_csv
from .tools import load_tools

SERVICE = handlers.SERVICE

logger = logging.getLogger("agent_runner.bootstrap")


def build_engine(engine: EngineSettings, *, ollama_host: str) -> Engine:
    if engine.kind == "llamacpp":
        from .adapters.llamacpp_engine import LlamaCppEngine

        path = Path(engine.model_path) if engine.model_path else bundled_gguf_path()
        version = engine.model_version or (path.stem if engine.model_path else BUNDLED_MODEL_VERSION)
        return LlamaCppEngine.load(
            str(path), model_version=version, n_ctx=engine.n_ctx, n_threads=engine.n_threads,
            use_extra_bufts=engine.use_extra_bufts, repeat_penalty=engine.repeat_penalty, seed=engine.seed,
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


def bootstrap(settings: AgentRunnerSettings | None = None, *, engine: Engine | None = None) -> FastAPI:
    settings = settings or load(AgentRunnerSettings)  # type: ignore[assignment]
    setup_logging(SERVICE, settings.log.level, settings.log.json_format)
    instance = settings.instance_id or f"{SERVICE}-{os.getpid()}"

    registry = new_registry(SERVICE)
    metrics = RunnerMetrics(registry)
    broker = make_broker(settings.broker.url, prefetch=settings.broker.prefetch, app_id=instance,
                         middlewares=(message_metrics_middleware(registry, SERVICE),))
    db = make_engine(settings.database.url, pool_size=settings.database.pool_size)
    store = ArtifactStore(settings.s3.endpoint, settings.s3.access_key.get_secret_value(),
                          settings.s3.secret_key.get_secret_value(), settings.s3.bucket,
                          secure=settings.s3.secure, region=settings.s3.region)
    outbox = Outbox(tables.outbox, db, broker)

    engine = engine or build_engine(settings.engine, ollama_host=settings.ollama_host)
    slot = ModelSlot(engine)
    metrics.serving(engine.model_version, engine.name)
    tools = build_tools(settings.tools)
    loop = AgentLoop(server_tools=tools, metrics=metrics, token_flush_chars=settings.runner.token_flush_chars,
                     token_flush_ms=settings.runner.token_flush_ms)
    run_agent = RunAgent(loop=loop, slot=slot, store=PostgresRunStore(db, outbox), sinks=reply_sinks(broker),
                         metrics=metrics, max_attempts=settings.broker.delivery_limit)
    queues = handlers.register(broker, run_agent=run_agent, record_deployment=RecordDeployment(slot),
                               delivery_limit=settings.broker.delivery_limit)

    async def close_engine() -> None:
        await slot.engine.close()

    runtime = ServiceRuntime(
        name=SERVICE,
        broker=broker,
        engine=db,
        registry=registry,
        checks={"broker": broker_check(broker), "postgres": postgres_check(db), "s3": s3_check(store),
                "engine": lambda: slot.engine.ping()},
        work_queues=queues,
        details=lambda: {**slot.describe(), "instance": instance, "server_tools": sorted(tools)},
        background=[outbox.run_relay],
        on_shutdown=[close_engine],
    )
    app = create_service_app(runtime)
    app.state.slot = slot
    app.state.broker = broker
    return app
