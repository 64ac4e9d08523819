"""Composition root of the gateway: settings → adapters → use cases → app.

The only module that reads settings and knows the concrete adapters. `build_broker` is the
AsyncAPI convention: every subscriber declared, nothing connected.
"""

from __future__ import annotations

import asyncio
import logging
import re

from fastapi import FastAPI
from faststream.rabbit import RabbitBroker
from redis.asyncio import Redis

from contracts import REPLY_QUEUE_PREFIX, new_id
from screening import default_screener
from screening.policy import ScreeningSettings
from servicekit.app import create_service_app
from servicekit.health import redis_check, s3_check
from servicekit.logs import setup_logging
from servicekit.messaging import delete_retired_queues, make_broker
from servicekit.outbox import Outbox
from servicekit.runtime import artifact_store, standard_runtime
from servicekit.settings import BrokerSettings

from . import SERVICE, handlers
from . import metrics as gateway_metrics
from .adapters import run_index as run_index_sql
from .adapters.key_files import KeyDirectory
from .adapters.log_miner import LogMinerClient
from .adapters.postgres import PostgresApiKeys, PostgresAuditLog, PostgresOpsStore, PostgresScreeningMarks
from .adapters.rate_limits import RedisRateLimiter
from .adapters.registry import PostgresModelRegistry
from .adapters.run_index import AsyncpgRunStore
from .api import errors, openapi, routers
from .api.middleware import BodySizeLimit, HttpMetrics
from .container import Container
from .domain import RunRules
from .domain.screening import InputScreen
from .service.access import AccessControl
from .service.api_keys import ApiKeyService
from .service.completions import CompletionService
from .service.models import ModelService
from .service.ops import OpsService
from .service.replies import ReplyRouter
from .service.runs import RunService
from .service.tokens import Keyring, TokenService
from .settings import AuthSettings, GatewaySettings

logger = logging.getLogger("gateway.bootstrap")


def build_broker(settings: BrokerSettings, *, instance_id: str = "instance") -> RabbitBroker:
    broker = make_broker(settings.url, prefetch=settings.prefetch, app_id=SERVICE)
    handlers.register(broker, delivery_limit=settings.delivery_limit, instance_id=instance_id)
    return broker


class RedactTokens(logging.Filter):
    """uvicorn logs each WebSocket handshake with its query string, i.e. with `?token=<jwt>`:
    a bearer credential must never reach a log file."""

    PATTERN = re.compile(r"((?:access_)?token=)[^&\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message:
            record.msg, record.args = self.PATTERN.sub(r"\1[redacted]", message), ()
        return True


def build_keyring(auth: AuthSettings) -> tuple[KeyDirectory, Keyring]:
    directory = KeyDirectory(auth.keys_dir)
    try:
        return directory, Keyring(directory.load(), auth.active_kid)
    except ValueError as exc:  # KeyFileError included: a start-up error that names the cause
        raise SystemExit(f"gateway keyring: {exc}") from None


async def watch_keys(directory: KeyDirectory, tokens: TokenService, active_kid: str | None, interval_s: float) -> None:
    """Key rotation without restart: re-read the directory when a file changes."""
    seen = await asyncio.to_thread(directory.fingerprint)
    while True:
        await asyncio.sleep(interval_s)
        try:
            current = await asyncio.to_thread(directory.fingerprint)
            if current == seen:
                continue
            keyring = Keyring(await asyncio.to_thread(directory.load), active_kid)
        except (OSError, ValueError) as exc:
            logger.error("key directory changed but cannot be loaded; keeping the previous keys: %s", exc)
            continue
        seen = current
        tokens.replace_keyring(keyring)
        logger.info("keyring reloaded: signing with %s, accepting %s", keyring.active.kid, ", ".join(keyring.kids))


def build_app(settings: GatewaySettings) -> FastAPI:
    setup_logging(SERVICE, settings.log.level, settings.log.json_format)
    for name in ("uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).addFilter(RedactTokens())
    instance_id = settings.instance_id or new_id()[:12]
    key_dir, keyring = build_keyring(settings.auth)  # first: a missing key stops start-up at once

    # Runtime: broker (+ message metrics), Postgres; Redis and S3 checked by /health/ready.
    # The gateway stores no artifacts: S3 down makes it unready, never stops it from starting.
    rt = standard_runtime(SERVICE, settings, lambda b: build_broker(b, instance_id=instance_id))
    rt.checks["s3"] = s3_check(artifact_store(settings.s3))
    # Durable work queues only: the reply queue is exclusive and gets no dead-letter queue.
    rt.work_queues = [q for q in rt.work_queues if not q.startswith(REPLY_QUEUE_PREFIX)]
    broker, engine = rt.broker, rt.engine
    metrics = gateway_metrics.build(rt.registry)
    redis = Redis.from_url(settings.redis.url)
    rt.checks["redis"] = redis_check(redis)
    run_index = AsyncpgRunStore(settings.database.url, max_size=2 * settings.database.pool_size,
                                on_flush=lambda kind, size: metrics.write_batch_size.labels(kind=kind).observe(size))
    # Fast-path publishing with batched marks, and the relay that covers crashes; staging happens
    # in the run index's statements (and `outbox.add`).
    outbox = Outbox(run_index.db, run_index_sql.SQL, broker)

    # Adapters → use cases.
    def count_auth_failure(reason: str) -> None:
        metrics.auth_failures.labels(reason=reason).inc()

    tokens = TokenService(
        keyring,
        issuer=settings.auth.issuer,
        audience=settings.auth.audience,
        ttl_s=settings.auth.token_ttl_s,
        leeway_s=settings.auth.leeway_s,
        on_failure=count_auth_failure,
    )
    limiter = RedisRateLimiter(
        settings.redis.url,
        f"{settings.redis.key_prefix}:{SERVICE}:limits",
        settings.limits.model_dump(),  # every limit by its name: runs, token
        on_refused=lambda limit: metrics.rate_limited.labels(limit=limit).inc(),
    )
    audit = PostgresAuditLog(run_index.db)
    replies = ReplyRouter(on_steps_forwarded=metrics.steps_forwarded.inc)
    runs = RunService(
        run_index,
        outbox,
        limiter,
        replies,
        metrics,
        reply_to=REPLY_QUEUE_PREFIX + instance_id,
        max_wait_s=settings.runs.max_wait_s,
        wait_grace_s=settings.runs.wait_grace_s,
        rules=RunRules(groupthink_max_samples=settings.runs.groupthink_max_samples),
        screen=input_screen(settings.screening),
        audit=audit,
    )
    ops_store = PostgresOpsStore(outbox)
    model_registry = PostgresModelRegistry(settings.database.url)
    label_queue = LogMinerClient(settings.log_miner_url)
    models = ModelService(model_registry, ops_store, audit, outbox, reports=label_queue)
    api_keys = ApiKeyService(PostgresApiKeys(engine), tokens, limiter, audit, on_failure=count_auth_failure,
                             cache_s=settings.auth.api_key_cache_s)
    container = Container(
        access=AccessControl(tokens, audit, api_keys),
        tokens=tokens,
        api_keys=api_keys,
        runs=runs,
        ops=OpsService(ops_store, audit, outbox, default_screener(settings.screening.mode),
                       PostgresScreeningMarks(outbox), run_index),
        models=models,
        completions=CompletionService(runs, models),
        metrics=metrics,
        max_body_bytes=settings.max_body_bytes,
    )
    broker.context.set_global(handlers.RUNS_KEY, runs)

    async def close_redis() -> None:
        await redis.aclose()

    rt.details = lambda: {
        "instance_id": instance_id,
        "reply_queue": REPLY_QUEUE_PREFIX + instance_id,
        "signing_kid": tokens.keyring.active.kid,
        "accepted_kids": tokens.keyring.kids,
        "watched_runs": len(replies),
    }
    rt.background += [
        lambda: handlers.consume_replies(handlers.reply_subscriber(broker), runs),
        lambda: watch_keys(key_dir, tokens, settings.auth.active_kid, settings.auth.reload_interval_s),
    ]
    rt.add_outbox(outbox)
    rt.on_startup += [run_index.open, model_registry.open,
                      lambda: delete_retired_queues(broker, list(handlers.RETIRED_QUEUES), keep_unread=True)]
    rt.on_shutdown += [close_redis, run_index.close, model_registry.close, label_queue.close]
    api_routers = routers()
    app = create_service_app(rt, api_routers, version="1")
    app.state.container = container
    app.state.label_queue = label_queue  # the operator route of decision 0013
    errors.install(app)
    openapi.install(app, api_routers, openai_path=errors.openai_path)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(HttpMetrics, metrics=metrics)  # outermost: counts 413s too
    logger.info("gateway instance %s: reply queue %s%s", instance_id, REPLY_QUEUE_PREFIX, instance_id)
    return app


def input_screen(settings: ScreeningSettings) -> InputScreen | None:
    """User and system messages screened per SCREENING__USER / SCREENING__SYSTEM (None: both off)."""
    if settings.user == "off" and settings.system == "off":
        return None
    return InputScreen(default_screener(settings.mode), settings)
