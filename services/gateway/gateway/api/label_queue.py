"""Operator route: the runs that most need a human label, from the log-miner (decision 0013)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from starlette.requests import HTTPConnection

from contracts.learning import LabelQueue

from ..adapters.log_miner import LabelQueueUnavailableError, LogMinerLabelQueue
from ..domain import Identity, Role
from .deps import require

router = APIRouter(prefix="/v1/ops", tags=["ops"])

Operator = Annotated[Identity, require(Role.OPERATOR, action="ops.label_queue.read")]


async def _label_queue(conn: HTTPConnection) -> LogMinerLabelQueue:
    return conn.app.state.label_queue


LabelQueueDep = Annotated[LogMinerLabelQueue, Depends(_label_queue)]


@router.get("/label-queue")
async def label_queue(
    who: Operator, queue: LabelQueueDep,
    limit: Annotated[int, Query(ge=1, le=LabelQueue.MAX_LIMIT, description="how many runs to list")] = 20,
    model_version: Annotated[str | None, Query(min_length=1, max_length=200,
                                               description="only runs served by this version")] = None,
) -> LabelQueue:
    """Runs nobody has rated yet that most need a human label: the lowest GroupThink confidence
    first, then failed runs by failure class. Label one with `POST /v1/runs/{run_id}/feedback`."""
    try:
        return await queue.head(limit, model_version)
    except LabelQueueUnavailableError as exc:
        # Not a domain error: the log-miner is a dependency of this one route only, and the
        # gateway stays ready without it.
        raise HTTPException(status_code=503, detail=str(exc)) from None
