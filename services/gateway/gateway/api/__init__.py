"""HTTP and WebSocket routes: thin modules by resource, each calling one use case."""

from __future__ import annotations

from fastapi import APIRouter

from . import admin, auth, canary, label_queue, models, openai, ops, runs, stream


def routers() -> list[APIRouter]:
    # stream before runs: `/v1/runs/stream` must not be taken for a run id
    return [auth.router, stream.router, runs.router, ops.router, label_queue.router, models.router, canary.router, openai.router,
            admin.router]
