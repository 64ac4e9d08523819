"""The log-miner's own HTTP routes (beside /health and /metrics). The port is internal: clients
and operators reach these through the gateway (decision 0013), which checks the caller's role."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import Response

from contracts.learning import MAX_DATASET_VERSION, LabelQueue

from .domain.corpus import CorpusUnavailableError
from .domain.openai_export import openai_line
from .ports import CorpusReader, MinerStore
from .service.canary_judge import JudgeCanaries


def router(store: MinerStore, files: CorpusReader, canaries: JudgeCanaries) -> APIRouter:
    routes = APIRouter(prefix="/v1", tags=["labels"])

    @routes.get("/datasets/{version}/export")
    async def export_dataset(
        version: Annotated[int, Path(ge=1, le=MAX_DATASET_VERSION, description="the dataset version (`v<N>` in S3)")],
        split: Annotated[Literal["train", "val"], Query(description="which split")] = "train",
        format: Annotated[Literal["openai"], Query(description="openai: OpenAI's chat fine-tuning JSONL")] = "openai",
    ) -> Response:
        """One split of a dataset version as JSON lines in another tool's shape."""
        uris = await store.dataset_files(version)
        if uris is None:
            raise HTTPException(status_code=404, detail=f"no dataset version {version}")
        try:
            data = await files.read(uris[split])
        except CorpusUnavailableError as exc:
            raise HTTPException(status_code=503, detail=f"dataset version {version} ({split}) cannot be read: {exc}")
        lines = [json.dumps(openai_line(json.loads(raw)), ensure_ascii=False)
                 for raw in data.decode().splitlines() if raw.strip()]
        return Response("".join(f"{line}\n" for line in lines), media_type="application/x-ndjson",
                        headers={"Content-Disposition": f'attachment; filename="dataset-v{version}-{split}.jsonl"'})

    @routes.get("/label-queue")
    async def label_queue(
        limit: Annotated[int, Query(ge=1, le=LabelQueue.MAX_LIMIT, description="how many runs to list")] = 20,
        model_version: Annotated[str | None, Query(min_length=1, max_length=200,
                                                   description="only runs served by this version")] = None,
    ) -> LabelQueue:
        """Runs without feedback that most need a human label: lowest GroupThink confidence first,
        then failed runs by failure class (see `domain.labeling`)."""
        return await store.label_queue(limit, model_version)

    @routes.get("/canary/report")
    async def canary_report(
        canary_id: Annotated[str | None, Query(min_length=1, max_length=200,
                                               description="default: the running canary, else the last")] = None,
    ) -> dict:
        """The canary judge's report: both arms' live tallies, each test and the interim
        decision (for an ended canary, the report it ended with)."""
        found = await canaries.report(canary_id)
        if found is None:
            raise HTTPException(status_code=404, detail=f"no canary {canary_id}" if canary_id else "no canary yet")
        return found

    return routes
