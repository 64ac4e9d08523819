"""Composition root of the trainer: settings → adapters → use cases → app.

`build_broker` is the AsyncAPI convention: every subscriber declared, nothing connected.
"""

from __future__ import annotations

import logging
import os
import uuid

from fastapi import FastAPI
from faststream.rabbit import RabbitBroker

from modelkit.base_model import bundled_gguf_path
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
from .adapters import job_store
from .adapters.base_models import BundledModel, ChainResolver, LocalPath
from .adapters.job_store import TrainingJobStore
from .adapters.rabbit_progress import RabbitProgressPublisher
from .adapters.s3_artifacts import S3Artifacts
from .metrics import TrainerMetrics
from .service import AcceptTraining, JobPolicy, RunTrainingJob
from .settings import TrainerSettings


def build_broker(settings: BrokerSettings) -> RabbitBroker:
    broker = make_broker(settings.url, prefetch=settings.prefetch, app_id=SERVICE)
    handlers.register(broker, delivery_limit=settings.delivery_limit)
    return broker


def build_app(settings: TrainerSettings) -> FastAPI:
    setup_logging(SERVICE, settings.log.level, settings.log.json_format)
    store_s3 = artifact_store(settings.s3)
    rt = standard_runtime(SERVICE, settings, build_broker, artifacts=store_s3)  # /health/ready checks S3 too
    metrics = TrainerMetrics(rt.registry)
    uow = UnitOfWork.of_schema(rt.db, SCHEMA, rt.broker)
    store = TrainingJobStore(PostgresJobQueue(uow, job_store.TABLE, job_store.KEY))
    t = settings.training
    # The lease identity is per process: a restarted instance with the same INSTANCE_ID must not
    # pass for the one that died holding the lease.
    owner = f"{settings.instance_id or f'{SERVICE}-{os.getpid()}'}:{uuid.uuid4().hex[:8]}"
    policy = JobPolicy(
        work_dir=t.work_dir, owner=owner, lease_ttl_s=t.lease_ttl_s, heartbeat_s=t.heartbeat_s,
        max_attempts=t.max_attempts, retry_delay_s=t.retry_delay_s, progress_interval_s=t.progress_interval_s,
        keep_checkpoints=t.keep_checkpoints, num_threads=t.num_threads, model_cache_dir=t.model_cache_dir,
    )
    run_job = RunTrainingJob(
        store, S3Artifacts(store_s3), WorkerLauncher("trainer.training.run", python=t.python, nice=t.nice),
        ChainResolver([BundledModel(bundled_gguf_path), LocalPath()]), RabbitProgressPublisher(rt.broker),
        metrics, policy,
    )
    scheduler = JobScheduler(store, run_job, metrics.job_counts, owner=owner, lease_ttl_s=t.lease_ttl_s,
                             poll_interval_s=t.poll_interval_s, retry_delay_s=t.retry_delay_s, what="training job",
                             logger=logging.getLogger("trainer.scheduler"))
    rt.broker.context.set_global(handlers.ACCEPT_TRAINING_KEY, AcceptTraining(store, metrics, scheduler.poke))
    rt.add_outbox(uow.outbox)
    rt.background += [scheduler.run, scheduler.run_gauges]
    rt.details = lambda: {
        "instance": owner,
        "current_job": run_job.describe(),
        "lease_ttl_s": t.lease_ttl_s,
        "max_attempts": t.max_attempts,
    }
    return create_service_app(rt)
