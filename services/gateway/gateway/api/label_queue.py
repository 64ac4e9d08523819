"""Operator routes read from the log-miner (decision 0013): the runs that most need a human label,
and a dataset version in another tool's format."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from starlette.requests import HTTPConnection

from contracts.learning import MAX_DATASET_VERSION, LabelQueue

from ..adapters.log_miner import DatasetNotFoundError, LogMinerClient, LogMinerUnavailableError
from ..domain import Identity, Role
from .deps import require
from .openapi import declared

router = APIRouter(prefix="/v1/ops", tags=["ops"])

Operator = Annotated[Identity, require(Role.OPERATOR, action="ops.label_queue.read")]
Exporter = Annotated[Identity, require(Role.OPERATOR, action="ops.datasets.export")]


async def _label_queue(conn: HTTPConnection) -> LogMinerClient:
    return conn.app.state.label_queue


LabelQueueDep = Annotated[LogMinerClient, Depends(_label_queue)]


@router.get("/label-queue", responses=declared(503))
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
    except LogMinerUnavailableError as exc:
        # Not a domain error: the log-miner is a dependency of this one route only, and the
        # gateway stays ready without it.
        raise HTTPException(status_code=503, detail=str(exc)) from None


@router.get("/datasets/{version}/export", response_class=Response,
            responses={200: {"content": {"application/x-ndjson": {}}, "description": "one line per example"},
                       **declared(404, 503)})
async def export_dataset(
    who: Exporter, miner: LabelQueueDep,
    version: Annotated[int, Path(ge=1, le=MAX_DATASET_VERSION, description="the dataset version (DatasetBuilt.version)")],
    split: Annotated[Literal["train", "val"], Query(description="which split")] = "train",
    format: Annotated[Literal["openai"], Query(description="openai: OpenAI's chat fine-tuning JSONL "
                                                           "(also TRL, datasets.load_dataset)")] = "openai",
) -> Response:
    """A dataset version's split as JSON lines another tool loads without conversion."""
    try:
        data = await miner.dataset_export(version, split, format)
    except DatasetNotFoundError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except LogMinerUnavailableError as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from None
    return Response(data, media_type="application/x-ndjson",
                    headers={"Content-Disposition": f'attachment; filename="dataset-v{version}-{split}.jsonl"'})
