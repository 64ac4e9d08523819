"""Engine: an Ollama server (`OLLAMA_HOST`), through the `ollama` client.

`raw=True` sends our own rendered Gemma prompt untouched, so the turn format stays the
project's; the exported Modelfile carries the same template for Ollama's own chat API.

Constraint: Ollama's generate API takes a JSON Schema as `format`, which makes the whole output
one JSON value; it cannot say "text or calls". So only a turn that must call (tool_choice
`required` or a named tool) is constrained: the prompt ends with `<tool_call>` already
written, `format` is the schema of one call's JSON (`tool_grammar.call_schema`), and the block
is closed here. One call per turn then (no parallel calls). Other choices decode freely. Not
proven against a real Ollama server (none runs where the tests run): the request is unit-tested.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from ollama import AsyncClient, ResponseError

from modelkit.chat_format import TOOL_CALL_CLOSE, TOOL_CALL_OPEN
from modelkit.tool_grammar import ToolConstraint, call_schema

from ..domain import EngineError
from ..ports import Chunk


@dataclass(frozen=True)
class OllamaTurn:
    """What is sent for one turn: the prompt, the `format` schema, and what wraps the output."""

    prompt: str
    format: dict[str, Any] | None = None
    opening: str = ""  # written into the prompt, and given back as the output's start
    closing: str = ""
    unconstrained_tools: tuple[str, ...] = ()


def ollama_turn(prompt: str, constraint: ToolConstraint | None) -> OllamaTurn:
    if constraint is not None and constraint.answer_schema is not None and (
            constraint.mode == "none" or not constraint.tools):
        return OllamaTurn(prompt, dict(constraint.answer_schema))  # a JSON answer only: Ollama's `format` holds it
    if constraint is None or constraint.mode != "required":
        return OllamaTurn(prompt)
    schema, unconstrained = call_schema(constraint)
    return OllamaTurn(prompt + TOOL_CALL_OPEN, schema, TOOL_CALL_OPEN, TOOL_CALL_CLOSE, unconstrained)


class OllamaEngine:
    name = "ollama"

    def __init__(self, host: str, model: str, *, model_version: str | None = None, keep_alive: str = "30m",
                 timeout_s: float = 300.0, seed: int = 0) -> None:
        self.client = AsyncClient(host=host, timeout=timeout_s)
        self.host = host
        self.model = model
        self.model_version = model_version or model
        self.keep_alive = keep_alive
        self.seed = seed

    async def generate(self, prompt: str, *, max_tokens: int, temperature: float,
                       stop: Sequence[str], constraint: ToolConstraint | None = None) -> AsyncIterator[Chunk]:
        options = {"num_predict": max_tokens, "temperature": temperature, "stop": list(stop), "seed": self.seed}
        turn = ollama_turn(prompt, constraint)
        try:
            stream = await self.client.generate(
                model=self.model, prompt=turn.prompt, raw=True, stream=True, options=options,
                keep_alive=self.keep_alive, format=turn.format,
            )
            if turn.opening:
                yield Chunk(turn.opening)
            async for part in stream:
                if part.done:
                    yield Chunk(
                        (part.response or "") + turn.closing,
                        prompt_tokens=part.prompt_eval_count,
                        completion_tokens=part.eval_count,
                        finish_reason="length" if part.done_reason == "length" else "stop",
                        constrained=turn.format is not None,
                        unconstrained_tools=turn.unconstrained_tools,
                    )
                    return
                if part.response:
                    yield Chunk(part.response)
        except (ResponseError, ConnectionError, httpx.HTTPError) as exc:
            raise EngineError(f"ollama at {self.host}: {exc}") from exc
        raise EngineError(f"ollama at {self.host}: stream ended before done")

    async def ping(self) -> None:
        await self.client.list()

    async def close(self) -> None:
        await self.client.close()
