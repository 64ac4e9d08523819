"""The log-miner's own HTTP routes (beside /health and /metrics). The port is internal: clients
and operators reach these through the gateway (decision 0013), which checks the caller's role."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from contracts.learning import LabelQueue

from .ports import MinerStore


def router(store: MinerStore) -> APIRouter:
    routes = APIRouter(prefix="/v1", tags=["labels"])

    @routes.get("/label-queue")
    async def label_queue(
        limit: Annotated[int, Query(ge=1, le=LabelQueue.MAX_LIMIT, description="how many runs to list")] = 20,
        model_version: Annotated[str | None, Query(min_length=1, max_length=200,
                                                   description="only runs served by this version")] = None,
    ) -> LabelQueue:
        """Runs without feedback that most need a human label: lowest GroupThink confidence first,
        then failed runs by failure class (see `domain.labeling`)."""
        return await store.label_queue(limit, model_version)

    return routes
