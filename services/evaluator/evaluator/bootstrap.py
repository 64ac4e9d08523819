"""Composition root of the evaluator: settings → adapters → use cases → app.

`build_broker` is the AsyncAPI convention: every subscriber declared, nothing connected.
"""

from __future__ import annotations

import logging
import os
import uuid

from fastapi import FastAPI
from faststream.rabbit import RabbitBroker

from evalkit.suites import CANDIDATE_DATASET, SuiteError, load_suites
from servicekit.app import create_service_app
from servicekit.jobs import JobScheduler
from servicekit.logs import setup_logging
from servicekit.jobstore import PostgresJobQueue
from servicekit.messaging import make_broker
from servicekit.runtime import artifact_store, standard_runtime
from servicekit.settings import BrokerSettings
from servicekit.uow import UnitOfWork

from . import SCHEMA, SERVICE, handlers
from .adapters import evaluation_store
from .adapters.evaluation_store import EvaluationJobStore, PostgresScores
from .adapters.llama_scorer import LlamaScorer
from .adapters.registry_models import RegistryModelFiles
from .adapters.s3_files import S3Datasets, S3Reports
from .domain import configured_suites
from .metrics import EvaluatorMetrics
from .service import AcceptExport, EvalPolicy, RunEvaluation
from .settings import EvaluatorSettings


def build_broker(settings: BrokerSettings) -> RabbitBroker:
    broker = make_broker(settings.url, prefetch=settings.prefetch, app_id=SERVICE)
    handlers.register(broker, delivery_limit=settings.delivery_limit)
    return broker


def build_app(settings: EvaluatorSettings) -> FastAPI:
    setup_logging(SERVICE, settings.log.level, settings.log.json_format)
    e = settings.eval
    try:  # a suite that cannot be read stops start-up with the file and line at fault
        suites = load_suites(e.suite_paths)
    except SuiteError as exc:
        raise SystemExit(f"EVAL__SUITES: {exc}") from None
    try:
        suites = configured_suites(suites, e.primary)
    except SuiteError as exc:
        raise SystemExit(f"EVAL__PRIMARY: {exc}") from None
    store_s3 = artifact_store(settings.s3)
    rt = standard_runtime(SERVICE, settings, build_broker, artifacts=store_s3)
    metrics = EvaluatorMetrics(rt.registry)
    uow = UnitOfWork.of_schema(rt.db, SCHEMA, rt.broker)
    store = EvaluationJobStore(PostgresJobQueue(uow, evaluation_store.TABLE, evaluation_store.KEY),
                               PostgresScores(rt.db))
    owner = f"{settings.instance_id or f'{SERVICE}-{os.getpid()}'}:{uuid.uuid4().hex[:8]}"
    policy = EvalPolicy(
        owner=owner, lease_ttl_s=e.lease_ttl_s, heartbeat_s=e.heartbeat_s, max_attempts=e.max_attempts,
        retry_delay_s=e.retry_delay_s, max_items=e.max_items, max_tokens=e.max_tokens, n_ctx=e.n_ctx,
        constrained=e.constrained == "auto",
        threshold=e.threshold, tolerance=e.tolerance, latency_tolerance=e.latency_tolerance,
        category_tolerance=e.category_tolerance, min_category_items=e.min_category_items,
        dataset_primary=e.primary == CANDIDATE_DATASET,
    )
    run = RunEvaluation(
        store, RegistryModelFiles(settings.database.url, store_s3, e.work_dir / "models"), S3Datasets(store_s3),
        S3Reports(store_s3), LlamaScorer(n_ctx=e.n_ctx, n_threads=e.n_threads, max_tokens=e.max_tokens,
                                         log_every=e.log_every, constrained=e.constrained == "auto"),
        metrics, suites, policy,
    )
    scheduler = JobScheduler(store, run, metrics.counts, owner=owner, lease_ttl_s=e.lease_ttl_s,
                             poll_interval_s=e.poll_interval_s, retry_delay_s=e.retry_delay_s, what="evaluation",
                             logger=logging.getLogger("evaluator.scheduler"))
    rt.broker.context.set_global(handlers.ACCEPT_EXPORT_KEY, AcceptExport(store, metrics, scheduler.poke))
    rt.add_outbox(uow.outbox)
    rt.background += [scheduler.run, scheduler.run_gauges]
    rt.details = lambda: {
        "instance": owner,
        "current_evaluation": run.describe(),
        "suites": [{"name": s.name, "kind": s.kind, "items": len(s.items), "primary": s.primary} for s in suites],
        "primary": e.primary,
        "min_category_items": e.min_category_items,
        "max_items": e.max_items,
        "max_tokens": e.max_tokens,
    }
    return create_service_app(rt)
