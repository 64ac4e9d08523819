"""One way to run a service: FastAPI (health, metrics, routes) whose lifespan owns the broker,
the database engine and background tasks. Built by each service's bootstrap."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.requests import HTTPConnection, Request
from faststream.rabbit import RabbitBroker
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from .db import AsyncpgPool
from .health import Check, health_router
from .messaging import declare_dead_letter_queues
from .metrics import metrics_router, outbox_gauges
from .text import text_problem, unstorable_json

if TYPE_CHECKING:
    from .outbox import Outbox

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

    def add_outbox(self, outbox: Outbox) -> None:
        """Run the outbox's relay in the background and export its backlog
        (`agentloop_outbox_pending_messages`, `agentloop_outbox_oldest_pending_age_seconds`)."""
        pending, oldest = outbox_gauges(self.registry, self.name)
        self.background += [outbox.run_relay, lambda: outbox.run_backlog_gauges(pending, oldest)]


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

    dependencies = [Depends(refuse_unstorable_text), *fastapi_kwargs.pop("dependencies", ())]
    app = FastAPI(title=f"agentloop {rt.name}", lifespan=lifespan, dependencies=dependencies, **fastapi_kwargs)
    app.include_router(health_router(rt.name, rt.checks, rt.details))
    app.include_router(metrics_router(rt.registry))
    for router in routers:
        app.include_router(router)
    return app


async def refuse_unstorable_text(conn: HTTPConnection) -> None:
    """Every route: a NUL, a lone surrogate (in the JSON body, the query or the path) or JSON nested
    too deep is a 422 naming where it is, before anything reads it (servicekit.text)."""
    errors = []
    for name, value in (*conn.path_params.items(), *conn.query_params.multi_items()):
        where = "path" if name in conn.path_params else "query"
        for text, loc in ((name, (where,)), (str(value), (where, name))):
            if (reason := text_problem(text)) is not None:
                errors.append({"type": "unstorable_text", "loc": loc, "msg": reason, "input": None})
                break
    if not errors and isinstance(conn, Request) and conn.method in ("POST", "PUT", "PATCH"):
        if (bad := unstorable_json(await conn.body())) is not None:
            errors.append({"type": "unstorable_text", "loc": ("body", *bad.loc), "msg": bad.reason, "input": None})
    if errors:
        raise RequestValidationError(errors[:1])
