"""Composition root of the exporter: settings → adapters → use cases → app.

`build_broker` is the AsyncAPI convention: every subscriber declared, nothing connected.
"""

from __future__ import annotations

import logging
import os
import uuid

from fastapi import FastAPI
from faststream.rabbit import RabbitBroker

from servicekit.app import create_service_app
from servicekit.jobs import JobScheduler
from servicekit.logs import setup_logging
from servicekit.jobstore import PostgresJobQueue
from servicekit.messaging import make_broker
from servicekit.runtime import artifact_store, standard_runtime
from servicekit.settings import BrokerSettings
from servicekit.uow import UnitOfWork
from servicekit.worker_process import WorkerLauncher

from . import SCHEMA, SERVICE, handlers
from .adapters import export_store
from .adapters.dataset_lineage import LineageReader
from .adapters.export_store import ExportStore, PostgresDeployments, PostgresRegistrar
from .adapters.s3_artifacts import S3Artifacts
from .metrics import ExporterMetrics
from .ports import ModelServer
from .service import AcceptExport, DeployModels, ExportPolicy, RunCanaries, RunExportJob
from .settings import ExporterSettings, OllamaSettings, cache_root

logger = logging.getLogger("exporter.bootstrap")


def build_broker(settings: BrokerSettings) -> RabbitBroker:
    broker = make_broker(settings.url, prefetch=settings.prefetch, app_id=SERVICE)
    handlers.register(broker, delivery_limit=settings.delivery_limit)
    return broker


def model_server(settings: OllamaSettings) -> ModelServer | None:
    if not settings.host:
        return None
    import ollama

    from .adapters.ollama_server import OllamaServer

    return OllamaServer(ollama.AsyncClient(host=settings.host, timeout=settings.timeout_s),
                        prefix=settings.model_prefix)


def build_app(settings: ExporterSettings) -> FastAPI:
    setup_logging(SERVICE, settings.log.level, settings.log.json_format)
    s3 = artifact_store(settings.s3)
    rt = standard_runtime(SERVICE, settings, build_broker, artifacts=s3)  # /health/ready checks S3 too
    metrics = ExporterMetrics(rt.registry)
    uow = UnitOfWork.of_schema(rt.db, SCHEMA, rt.broker)
    store = ExportStore(PostgresJobQueue(uow, export_store.TABLE, export_store.KEY), PostgresRegistrar())
    deployments = PostgresDeployments(uow)
    e = settings.export
    cache = e.model_cache_dir or cache_root()
    artifacts = S3Artifacts(s3, cache / "registry")
    # The lease identity is per process: a restarted instance with the same INSTANCE_ID must not
    # pass for the one that died holding the lease.
    owner = f"{settings.instance_id or f'{SERVICE}-{os.getpid()}'}:{uuid.uuid4().hex[:8]}"
    policy = ExportPolicy(
        work_dir=e.work_dir, owner=owner, lease_ttl_s=e.lease_ttl_s, heartbeat_s=e.heartbeat_s,
        max_attempts=e.max_attempts, retry_delay_s=e.retry_delay_s, quants=tuple(e.quants),
        parity_tokens=e.parity_tokens, upload_f16=e.upload_f16, model_cache_dir=e.model_cache_dir,
    )
    run_job = RunExportJob(store, artifacts, WorkerLauncher("exporter.export.run", python=e.python, nice=e.nice),
                           LineageReader(artifacts), metrics, policy)
    scheduler = JobScheduler(store, run_job, metrics.job_counts, owner=owner, lease_ttl_s=e.lease_ttl_s,
                             poll_interval_s=e.poll_interval_s, retry_delay_s=e.retry_delay_s, what="export job",
                             logger=logging.getLogger("exporter.scheduler"))
    server = model_server(settings.ollama)
    deploy = DeployModels(deployments, artifacts, metrics, server=server)
    rt.broker.context.set_global(handlers.ACCEPT_EXPORT_KEY, AcceptExport(store, metrics, scheduler.poke))
    rt.broker.context.set_global(handlers.DEPLOY_KEY, deploy)
    rt.broker.context.set_global(handlers.CANARIES_KEY, RunCanaries(deployments, deploy, metrics))

    async def show_production() -> None:
        production = (await deployments.aliases()).get("production")
        if production:
            metrics.production_changed(production, None)
        logger.info("registry production version: %s", production)

    rt.on_startup.insert(0, show_production)
    rt.add_outbox(uow.outbox)
    rt.background += [scheduler.run, scheduler.run_gauges]
    last: dict[str, object] = {}

    async def refresh_last() -> None:
        last.update(await store.last_finished() or {})

    rt.details = lambda: {
        "instance": owner,
        "current_export": run_job.describe(),
        "last_export": last or None,
        "ollama": settings.ollama.host,
        "quants": e.quants,
    }
    rt.background.append(lambda: _poll(refresh_last, e.poll_interval_s))
    return create_service_app(rt)


async def _poll(fn, interval_s: float) -> None:  # noqa: ANN001 - an async callable
    """Background task: refresh what /health/detailed shows (its `details` callable is synchronous)."""
    import asyncio

    while True:
        try:
            await fn()
        except asyncio.CancelledError:
            raise
        except Exception:  # shown stale until Postgres answers again
            logger.debug("health details not refreshed", exc_info=True)
        await asyncio.sleep(max(interval_s, 1.0))
