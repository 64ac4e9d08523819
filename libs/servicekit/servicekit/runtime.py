"""The standard runtime of a service, built from its settings: broker with message metrics,
Postgres engine, optional S3 store, health checks, work queues taken from the subscribers.

Each service's bootstrap exposes `build_broker(settings: BrokerSettings) -> RabbitBroker`
(every subscriber and publisher declared, nothing connected); `standard_runtime` takes it,
so the same function feeds the running service and the AsyncAPI document.
"""

from __future__ import annotations

from collections.abc import Callable

import uvicorn
from fastapi import FastAPI
from faststream.rabbit import RabbitBroker

from .app import ServiceRuntime
from .artifacts import ArtifactStore
from .db import AsyncpgPool, make_engine
from .health import broker_check, postgres_check, s3_check
from .metrics import message_metrics_middleware, new_registry
from .settings import BrokerSettings, HttpSettings, S3Settings, ServiceSettings

BrokerFactory = Callable[[BrokerSettings], RabbitBroker]


def artifact_store(s3: S3Settings) -> ArtifactStore:
    return ArtifactStore(
        s3.endpoint,
        s3.access_key.get_secret_value(),
        s3.secret_key.get_secret_value(),
        s3.bucket,
        secure=s3.secure,
        region=s3.region,
    )


def work_queue_names(broker: RabbitBroker) -> list[str]:
    """Queues the broker's subscribers consume: their dead-letter queues are declared at start-up."""
    return sorted({sub.queue.name for sub in broker.subscribers})


def standard_runtime(
    name: str,
    settings: ServiceSettings,
    build_broker: BrokerFactory,
    *,
    artifacts: ArtifactStore | None = None,
) -> ServiceRuntime:
    """Broker (with FastStream's Prometheus middleware) + engine + asyncpg pool (`rt.db`) + checks;
    S3 when given.

    With `artifacts`, its bucket is created at start-up and `/health/ready` checks it.
    """
    registry = new_registry(name)
    broker = build_broker(settings.broker)
    broker.add_middleware(message_metrics_middleware(registry, name))
    engine = make_engine(settings.database.url, pool_size=settings.database.pool_size)
    rt = ServiceRuntime(
        name=name,
        broker=broker,
        engine=engine,
        registry=registry,
        checks={"broker": broker_check(broker), "postgres": postgres_check(engine)},
        work_queues=work_queue_names(broker),
        db=AsyncpgPool(settings.database.url, what=f"the {name} database pool", max_size=settings.database.pool_size),
    )
    if artifacts is not None:
        rt.checks["s3"] = s3_check(artifacts)
        rt.on_startup.append(artifacts.ensure_bucket)
    return rt


def serve(app: FastAPI, http: HttpSettings) -> None:
    """Run the app with uvicorn; `log_config=None` keeps the service's own JSON logging."""
    uvicorn.run(app, host=http.host, port=http.port, log_config=None, access_log=False)
