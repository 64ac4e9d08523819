"""`/health` (liveness), `/health/ready` (dependencies reachable), `/health/detailed`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from faststream.rabbit import RabbitBroker
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from .artifacts import ArtifactStore

Check = Callable[[], Awaitable[None]]


def broker_check(broker: RabbitBroker) -> Check:
    async def check() -> None:
        if not await broker.ping(timeout=2.0):
            raise ConnectionError("broker did not answer")

    return check


def postgres_check(engine: AsyncEngine) -> Check:
    async def check() -> None:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    return check


def redis_check(redis: Redis) -> Check:
    async def check() -> None:
        await redis.ping()

    return check


def s3_check(store: ArtifactStore) -> Check:
    return store.ping


async def run_checks(checks: dict[str, Check], timeout_s: float = 3.0) -> dict[str, dict[str, Any]]:
    async def one(check: Check) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            await asyncio.wait_for(check(), timeout=timeout_s)
            return {"ok": True, "ms": round((time.perf_counter() - start) * 1000, 2)}
        except Exception as exc:  # a failing dependency is reported, not raised
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}

    results = await asyncio.gather(*(one(c) for c in checks.values()))
    return dict(zip(checks, results, strict=True))


def health_router(service: str, checks: dict[str, Check], details: Callable[[], dict[str, Any]]) -> APIRouter:
    router = APIRouter(tags=["health"])
    started = time.time()

    @router.get("/health")
    async def live() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @router.get("/health/ready", responses={503: {"description": "a dependency check failed (each check's result "
                                                                 "is in the body)"}})
    async def ready() -> JSONResponse:
        results = await run_checks(checks)
        ok = all(r["ok"] for r in results.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": results}, status_code=200 if ok else 503)

    @router.get("/health/detailed")
    async def detailed() -> JSONResponse:
        results = await run_checks(checks)
        ok = all(r["ok"] for r in results.values())
        body = {
            "status": "ok" if ok else "degraded",
            "service": service,
            "uptime_s": round(time.time() - started, 1),
            "checks": results,
            **details(),
        }
        return JSONResponse(body, status_code=200)

    return router
