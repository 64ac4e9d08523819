"""Runs: submit (202, or 200 with `?wait=true`), read, give feedback."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response

from ..domain import FeedbackSubmission, RunSubmission
from ..service.completions import run_id_of
from .deps import CurrentUser, RunsDep
from .openapi import declared
from .schemas import FeedbackAccepted, RunAccepted, RunList, RunView

router = APIRouter(prefix="/v1/runs", tags=["runs"])


def _json(model, status_code: int = 200) -> Response:
    # Serialize once with pydantic-core instead of FastAPI's validate-then-serialize.
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")


@router.post(
    "",
    response_model=RunView,
    status_code=200,
    responses={202: {"model": RunAccepted, "description": "accepted (no wait, or the wait timed out)"},
               **declared(429)},
)
async def submit_run(
    body: RunSubmission,
    who: CurrentUser,
    runs: RunsDep,
    wait: bool = False,
    timeout: Annotated[float | None, Query(gt=0, description="seconds to wait with wait=true")] = None,
) -> Response:
    if not wait:
        run = await runs.submit(who, body)
        return _json(RunAccepted.of(run.run_id), 202)
    run = await runs.submit_and_wait(who, body, timeout)
    if not run.finished:
        return _json(RunAccepted.of(run.run_id), 202)
    return _json(RunView.of(run))


@router.get("", response_model=RunList)
async def list_runs(
    who: CurrentUser, runs: RunsDep,
    metadata: Annotated[list[str] | None, Query(
        description="`key:value`, repeatable: only runs tagged with every pair (the request's `metadata`)")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="how many runs, newest first")] = 50,
) -> Response:
    """Runs newest first, filtered by their tags: your own, or everyone's with an operator's role."""
    tags: dict[str, str] = {}
    for i, pair in enumerate(metadata or []):
        key, sep, value = pair.partition(":")
        if not sep or not key:
            raise HTTPException(422, [{"type": "value_error", "loc": ["query", "metadata", i],
                                       "msg": f"{pair!r} is not `key:value`"}])
        tags[key] = value
    return _json(RunList.of(await runs.list(who, tags, limit)))


@router.get("/{run_id}", response_model=RunView, responses=declared(404))
async def get_run(run_id: str, who: CurrentUser, runs: RunsDep) -> Response:
    """A run, by its id or by the id of the chat completion it answered (`chatcmpl-...`)."""
    return _json(RunView.of(await runs.get(who, run_id_of(run_id))))


@router.post("/{run_id}/feedback", status_code=201, response_model=FeedbackAccepted, responses=declared(404, 409))
async def give_feedback(run_id: str, body: FeedbackSubmission, who: CurrentUser, runs: RunsDep) -> Response:
    """Rate a run (or the chat completion it answered, by its `chatcmpl-...` id), optionally with a correction."""
    run_id = run_id_of(run_id)
    feedback_id = await runs.add_feedback(who, run_id, body)
    return _json(FeedbackAccepted(feedback_id=feedback_id, run_id=run_id), 201)
