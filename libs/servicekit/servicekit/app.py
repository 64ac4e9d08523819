"""One way to run a service: FastAPI (health, metrics, routes) whose lifespan owns the broker,
the database engine and background tasks. Built by each service's bootstrap."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI
from faststream.rabbit import RabbitBroker
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from .db import AsyncpgPool
from .health import Check, health_router
from .messaging import declare_dead_letter_queues
from .metrics import metrics_router

logger = logging.getLogger("servicekit.app")

Hook = Callable[[], Awaitable[None]]


@dataclass
class ServiceRuntime:
    name: str
    broker: RabbitBroker
    engine: AsyncEngine | None
    registry: CollectorRegistry
    checks: dict[str, Check]
    work_queues: list[str] = field(default_factory=list)
    details: Callable[[], dict[str, Any]] = dict
    background: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_startup: list[Hook] = field(default_factory=list)
    on_shutdown: list[Hook] = field(default_factory=list)
    db: AsyncpgPool | None = None  # the service's asyncpg pool: open from before the start-up hooks to the end


def create_service_app(rt: ServiceRuntime, routers: Sequence[APIRouter] = (), **fastapi_kwargs: Any) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await rt.broker.connect()
        # The dead-letter queues must exist before any consumer can reject into them.
        await declare_dead_letter_queues(rt.broker, rt.work_queues)
        if rt.db is not None:
            await rt.db.open()
        for hook in rt.on_startup:
            await hook()
        await rt.broker.start()
        tasks = [asyncio.create_task(job(), name=f"{rt.name}-bg") for job in rt.background]
        logger.info("%s started; consuming %s", rt.name, ", ".join(rt.work_queues) or "nothing")
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await rt.broker.stop()
            for hook in reversed(rt.on_shutdown):
                await hook()
            if rt.db is not None:
                await rt.db.close()
            if rt.engine is not None:
                await rt.engine.dispose()
            logger.info("%s stopped", rt.name)

    app = FastAPI(title=f"agentloop {rt.name}", lifespan=lifespan, **fastapi_kwargs)
    app.include_router(health_router(rt.name, rt.checks, rt.details))
    app.include_router(metrics_router(rt.registry))
    for router in routers:
        app.include_router(router)
    return app
