"""Composition root of the log-miner: settings → adapters → use cases → app.

`build_broker` is the AsyncAPI convention: every subscriber declared, nothing connected.
"""

from __future__ import annotations

from fastapi import FastAPI
from faststream.rabbit import RabbitBroker

from servicekit.app import create_service_app
from servicekit.logs import setup_logging
from servicekit.messaging import delete_retired_queues, make_broker
from servicekit.messagesql import MessageSql
from servicekit.outbox import Outbox
from servicekit.runtime import artifact_store, standard_runtime
from servicekit.settings import BrokerSettings

from . import SCHEMA, SERVICE, api, handlers
from .adapters.asyncpg_interactions import AsyncpgInteractionLog
from .adapters.postgres_store import PostgresMinerStore
from .adapters.s3_files import CorpusFiles, S3DatasetFiles
from .domain.policy import PolicyRules
from .domain.validation import Limits
from .metrics import MinerMetrics
from .domain.canary import JudgeRules
from .service import BuildDataset, JudgeCanaries, RecordRuns, RetrainPolicy
from .service.build_dataset import BuildSettings
from .settings import LogMinerSettings


def build_broker(settings: BrokerSettings) -> RabbitBroker:
    broker = make_broker(settings.url, prefetch=settings.prefetch, app_id=SERVICE)
    handlers.register(broker, delivery_limit=settings.delivery_limit)
    return broker


def build_app(settings: LogMinerSettings) -> FastAPI:
    setup_logging(SERVICE, settings.log.level, settings.log.json_format)
    artifacts = artifact_store(settings.s3)
    rt = standard_runtime(SERVICE, settings, build_broker, artifacts=artifacts)  # /health/ready checks S3 too
    metrics = MinerMetrics(rt.registry)
    outbox = Outbox(rt.db, MessageSql(SCHEMA), rt.broker)
    store = PostgresMinerStore(rt.engine, outbox)
    mining, policy = settings.mining, settings.policy
    roots = [r.strip() for r in mining.corpus_roots.split(",") if r.strip()]
    files = CorpusFiles(artifacts, roots, mining.max_corpus_bytes)
    build = BuildDataset(
        store, S3DatasetFiles(artifacts), files, metrics,
        BuildSettings(
            limits=Limits(max_chars=mining.max_chars, max_messages=mining.max_messages),
            include_unrated=mining.include_unrated, hints_placement=mining.hints_placement,
            default_base_model=mining.default_base_model, progress_every=mining.progress_every,
        ),
    )
    rules = PolicyRules(
        enabled=policy.enabled, min_new_examples=policy.min_new_examples, failure_rate=policy.failure_rate,
        window_s=policy.window_s, min_window_runs=policy.min_window_runs, min_examples=policy.min_examples,
        cooldown_s=policy.cooldown_s,
    )
    retrain_policy = RetrainPolicy(store, build, metrics, rules, debounce_s=policy.debounce_s)
    # Logged runs (one per agent run) take the hot path: batched, on a plain asyncpg pool.
    interaction_log = AsyncpgInteractionLog(settings.database.url)
    record = RecordRuns(store, interaction_log, metrics, include_unrated=mining.include_unrated,
                        on_recorded=retrain_policy.poke)
    rt.broker.context.set_global(handlers.RECORD_RUNS_KEY, record)
    rt.broker.context.set_global(handlers.BUILD_DATASET_KEY, build)
    c = settings.canary
    canaries = JudgeCanaries(store, metrics, JudgeRules(alpha=c.alpha, margin=c.margin,
                                                        latency_tolerance=c.latency_tolerance),
                             interval_s=c.judge_interval_s)
    rt.add_outbox(outbox)
    rt.background += [retrain_policy.run, canaries.run]
    rt.on_startup += [interaction_log.open,
                      lambda: delete_retired_queues(rt.broker, list(handlers.RETIRED_QUEUES), keep_unread=True)]
    rt.on_shutdown += [interaction_log.close, record.close]  # run in reverse: the last batch, then the pool
    rt.details = lambda: {"policy": "on" if policy.enabled else "off", "include_unrated": mining.include_unrated}
    return create_service_app(rt, [api.router(store, files, canaries)])
