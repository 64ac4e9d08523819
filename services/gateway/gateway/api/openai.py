"""OpenAI-compatible routes: `POST /v1/chat/completions` and `GET /v1/models`, for apps built on the
OpenAI SDKs (and the frameworks on top of them) with nothing changed but their base URL. An API key
works as the bearer credential here, besides an access token. Errors come in OpenAI's error object
(api/errors.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Path
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.requests import HTTPConnection

from ..domain import ChatCompletionRequest, ModelNotFoundError
from ..service.completions import OWNER, CompletionService, ServedModel, StreamedCompletion
from .deps import OpenAIUser
from .openapi import declared

router = APIRouter(tags=["openai"])


async def _completions(conn: HTTPConnection) -> CompletionService:
    return conn.app.state.container.completions


CompletionsDep = Annotated[CompletionService, Depends(_completions)]


@router.post("/v1/chat/completions", responses={
    200: {"description": "a chat.completion object, or with `stream` server-sent chat.completion.chunk events"},
    **declared(400, 401, 404, 429, 502, 504, openai=True)})
async def chat_completions(
    body: ChatCompletionRequest, who: OpenAIUser, completions: CompletionsDep,
    x_session_id: Annotated[str | None, Header(min_length=1, max_length=128, description=(
        "links the completions of one conversation (as the `session_id` metadata tag)"))] = None,
):
    """One model turn on the conversation, the client's tools offered (OpenAI's chat completions)."""
    if x_session_id and "session_id" not in (body.metadata or {}):
        body.metadata = {**(body.metadata or {}), "session_id": x_session_id}
    if body.streamed:
        streamed = await completions.open_stream(who, body)
        return ClosingStreamingResponse(_sse(streamed), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    completion, run_ids = await completions.complete(who, body)
    return JSONResponse(completion, headers={"X-Agentloop-Run-Ids": ",".join(run_ids)})


class ClosingStreamingResponse(StreamingResponse):
    """Closes its body when the response ends, however it ends. Starlette leaves a body that a
    client disconnect interrupted suspended for the garbage collector to close; closing it here
    runs the stream's `finally` (which cancels the run) at once."""

    async def stream_response(self, send) -> None:
        try:
            await super().stream_response(send)
        finally:
            if (aclose := getattr(self.body_iterator, "aclose", None)) is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()


async def _sse(streamed: StreamedCompletion) -> AsyncIterator[str]:
    chunks = streamed.chunks()
    try:
        async for chunk in chunks:
            yield f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        await chunks.aclose()  # the inner stream's `finally` runs now, not when it is collected


def _model(m: ServedModel) -> dict[str, Any]:
    return {"id": m.id, "object": "model", "created": m.created, "owned_by": OWNER}


@router.get("/v1/models")
async def list_models(who: OpenAIUser, completions: CompletionsDep) -> JSONResponse:
    """What a completion's `model` may name (OpenAI's model list)."""
    return JSONResponse({"object": "list", "data": [_model(m) for m in await completions.served()]})


@router.get("/v1/models/{model}", responses=declared(404, openai=True))
async def get_model(who: OpenAIUser, completions: CompletionsDep,
                    model: Annotated[str, Path(min_length=1, max_length=200)]) -> JSONResponse:
    for m in await completions.served():
        if m.id == model:
            return JSONResponse(_model(m))
    raise ModelNotFoundError(model, f"the model {model!r} is not served here")
