"""OpenAI-compatible chat completions: each choice is one run (one model turn, the client's tools),
submitted, waited for or streamed through `RunService` like every run, so it is logged, mined and
trained on like every run. This module only translates: the request into runs
(`domain.openai.to_run`), run records into OpenAI's completion and chunk objects.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from contracts import AgentRunStep

from ..domain import (
    ChatCompletionRequest,
    CompletionFailedError,
    Identity,
    ModelNotFoundError,
    RunRecord,
    RunSubmission,
    to_run,
)
from .models import ModelService
from .runs import Admission, RunService

# What a completion's `model` may name: these aliases where the registry sets them, and every version
# with a GGUF (the runner serves production and loads another when a run names it: decision 0018).
SERVED_ALIASES = ("production", "candidate", "previous")
OWNER = "agent-loop"


@dataclass(frozen=True)
class ServedModel:
    id: str
    created: int


def completion_id(run_id: str) -> str:
    return f"chatcmpl-{run_id}"


def run_id_of(completion_or_run_id: str) -> str:
    """A run id from a completion id (`chatcmpl-<run id>`) or a run id."""
    return completion_or_run_id.removeprefix("chatcmpl-")


def call_id(run_id: str, index: int) -> str:
    """A tool call's id, unique across the turns of a conversation (the runner numbers calls per run)."""
    return f"call_{run_id[-12:]}_{index}"


def tool_calls_of(record: RunRecord, parallel: bool) -> list[dict[str, Any]]:
    calls = record.client_tool_calls or []
    if not parallel:
        calls = calls[:1]  # parallel_tool_calls=false: the first call only
    return [{"id": call_id(record.run_id, i), "type": "function",
             "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments") or {})}}
            for i, c in enumerate(calls, start=1)]


def finish_reason(record: RunRecord, max_tokens: int) -> str:
    if record.outcome == "client_tool_call":
        return "tool_calls"
    if (record.usage or {}).get("completion_tokens", 0) >= max_tokens:
        return "length"
    return "stop"


def content_of(record: RunRecord) -> str | None:
    """The assistant's text: the answer, or for a turn whose tool call the runner could not accept
    (outcome max_steps) what the model wrote."""
    if record.outcome in ("answered", "client_tool_call"):
        return record.answer
    model_turns = [s for s in record.steps or [] if s.get("kind") == "model"]
    return model_turns[-1].get("text") if model_turns else None


def check_outcome(record: RunRecord) -> None:
    """A run that gave no turn to return is the completion's error."""
    if not record.finished:
        raise CompletionFailedError("timeout", f"run {record.run_id} did not finish in time; it goes on, "
                                    f"GET /v1/runs/{record.run_id} shows its outcome")
    if record.status == "failed":
        kind = {"prompt_too_long": "context_length", "model_not_served": "model"}.get(record.error_code or "", "run")
        raise CompletionFailedError(kind, record.error or "the run failed", code=record.error_code)
    if record.outcome in ("timeout", "error"):
        raise CompletionFailedError("timeout" if record.outcome == "timeout" else "run",
                                    f"run {record.run_id} ended with {record.outcome}")


def usage_of(records: list[RunRecord]) -> dict[str, int]:
    prompt = sum(int((r.usage or {}).get("prompt_tokens", 0)) for r in records)
    completion = sum(int((r.usage or {}).get("completion_tokens", 0)) for r in records)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class CompletionService:
    def __init__(self, runs: RunService, models: ModelService, *, models_ttl_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.runs = runs
        self.models = models
        self.models_ttl_s = models_ttl_s
        self._clock = clock
        self._served: tuple[float, list[ServedModel]] | None = None

    # ------------------------------------------------------------------ models

    async def served(self) -> list[ServedModel]:
        """What a completion may name: `production` (always: the bundled base serves without a
        registry), `candidate` and `previous` where set, then each version with a GGUF, newest first
        (read at most every `models_ttl_s`)."""
        now = self._clock()
        if self._served is not None and now - self._served[0] < self.models_ttl_s:
            return self._served[1]
        aliases, versions = await self.models.versions()
        created = {v.version: int(v.created_at.timestamp()) for v in versions}
        served = [ServedModel(alias, created.get(aliases.get(alias, ""), 0)) for alias in SERVED_ALIASES
                  if alias in aliases or alias == "production"]
        newest_first = sorted(versions, key=lambda v: v.created_at, reverse=True)
        served += [ServedModel(v.version, created[v.version]) for v in newest_first if v.gguf() is not None]
        self._served = (now, served)
        return served

    async def _check_model(self, name: str) -> None:
        served = [m.id for m in await self.served()]
        if name not in served:
            raise ModelNotFoundError(name, f"the model {name!r} is not served here; served: {', '.join(served)}")

    async def _runs_of(self, req: ChatCompletionRequest) -> RunSubmission:
        """The run of each choice; the run's own rules are checked once, when it is admitted
        (the OpenAI error handler names an `options.*` culprit as the completion's parameter)."""
        body = to_run(req)
        await self._check_model(req.model)
        return body

    # ------------------------------------------------------------------ one answer

    async def complete(self, who: Identity, req: ChatCompletionRequest) -> tuple[dict[str, Any], list[str]]:
        """The chat.completion object, and the run ids behind its choices."""
        body = await self._runs_of(req)
        admitted = await self.runs.admit(who, body, runs=req.choices)  # rules and screening once, rate per choice
        answers = await asyncio.gather(*(self.runs.submit_and_wait(who, body, admitted=admitted)
                                         for _ in range(req.choices)),
                                       return_exceptions=True)  # every choice's error retrieved, the first raised
        if errors := [a for a in answers if isinstance(a, BaseException)]:
            raise errors[0]
        records = [a for a in answers if isinstance(a, RunRecord)]
        for record in records:
            check_outcome(record)
        first = records[0]
        max_tokens = body.options.max_tokens
        choices = []
        for i, record in enumerate(records):
            message: dict[str, Any] = {"role": "assistant", "content": content_of(record), "refusal": None}
            if calls := tool_calls_of(record, req.parallel):
                message["tool_calls"] = calls
            choices.append({"index": i, "message": message, "logprobs": None,
                            "finish_reason": finish_reason(record, max_tokens)})
        completion = {
            "id": completion_id(first.run_id), "object": "chat.completion", "created": int(first.created_at.timestamp()),
            "model": first.model_version or req.model, "system_fingerprint": None, "choices": choices,
            "usage": usage_of(list(records)),
        }
        return completion, [r.run_id for r in records]

    # ------------------------------------------------------------------ streamed

    async def open_stream(self, who: Identity, req: ChatCompletionRequest) -> StreamedCompletion:
        """Everything that can refuse the request, before the response starts: the chunks come from
        `StreamedCompletion.chunks()`, which submits the run when it is first iterated."""
        body = await self._runs_of(req)
        admitted = await self.runs.admit(who, body)
        return StreamedCompletion(self.runs, who, body, req, admitted)


class StreamedCompletion:
    """A completion about to be streamed: its run is submitted when `chunks()` is first iterated."""

    def __init__(self, runs: RunService, who: Identity, body: RunSubmission, req: ChatCompletionRequest,
                 admitted: Admission) -> None:
        self.runs = runs
        self.who = who
        self.body = body
        self.req = req
        self.admitted = admitted
        self.run_id: str | None = None

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        """chat.completion.chunk objects: the role, content deltas as the model writes, the tool calls,
        the finish reason, then (stream_options.include_usage) the usage; an error object if the run
        gives no turn. A client that leaves before the end cancels the run: the runner stops the
        turn, frees its engine and records the run as failed (`cancelled`)."""
        finished = False
        try:
            async for chunk in self._chunks():
                yield chunk
            finished = True
        finally:
            if not finished and self.run_id is not None:
                self.runs.cancel_soon(self.run_id, "the client left the completion's stream")

    async def _chunks(self) -> AsyncIterator[dict[str, Any]]:
        async with self.runs.stream(self.who, self.body, admitted=self.admitted) as stream:
            self.run_id = stream.run_id
            created = int(stream.run.created_at.timestamp())
            model = self.req.model
            usage = self.req.include_usage

            def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
                out = {"id": completion_id(stream.run_id), "object": "chat.completion.chunk", "created": created,
                       "model": model, "system_fingerprint": None,
                       "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
                if usage:
                    out["usage"] = None
                return out

            yield chunk({"role": "assistant", "content": ""})
            try:
                async with asyncio.timeout(self.runs.wait_timeout(self.body, None)):
                    while (event := await stream.next()) is not None:
                        if isinstance(event, AgentRunStep):
                            if event.kind == "token" and event.text:
                                yield chunk({"content": event.text})
                            continue
                        record = event
                        break
                    else:
                        return
            except TimeoutError:
                yield {"error": _error_body(CompletionFailedError(
                    "timeout", f"run {stream.run_id} did not finish in time; GET /v1/runs/{stream.run_id} "
                               "shows its outcome"))}
                return
            try:
                check_outcome(record)
            except CompletionFailedError as exc:
                yield {"error": _error_body(exc)}
                return
            model = record.model_version or model
            if record.outcome == "max_steps" and (text := content_of(record)):
                yield chunk({"content": text})  # the turn the runner refused was not streamed as text
            calls = tool_calls_of(record, self.req.parallel)
            if calls:
                yield chunk({"tool_calls": [{"index": i, **c} for i, c in enumerate(calls)]})
            yield chunk({}, finish_reason(record, self.body.options.max_tokens))
            if usage:
                yield {"id": completion_id(stream.run_id), "object": "chat.completion.chunk", "created": created,
                       "model": model, "system_fingerprint": None, "choices": [], "usage": usage_of([record])}


def _error_body(exc: CompletionFailedError) -> dict[str, Any]:
    return {"message": str(exc), "type": exc.openai_type, "param": None, "code": exc.code}
